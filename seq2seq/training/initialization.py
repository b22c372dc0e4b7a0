"""Starting a run from a model package (``seq2seq train --init-from PACKAGE``), as NeMo's
``init_from_nemo_model`` and ESPnet's ``--init_param`` do: its weights, feature statistics and tokenizer.

The run's model is built from the run's own config; every tensor must exist in the package with the same
shape, and the run's tokenizer, if it already has one, must be the package's. Anything else is a one-line
error naming the tensors or files, raised before training starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn

from seq2seq.core.package import (
    TOKENIZER,
    PackageError,
    load_state_checked,
    read_package_config,
    read_weights,
)
from seq2seq.core.text import CONFIG_FILE


def package_tokenizer(package: Path, run_tokenizer: Path) -> None:
    """Give the run the tokenizer of a package, or of a tokenizer folder (copied once); refuse a run that
    already has another one."""
    source = package if (package / CONFIG_FILE).is_file() else package / TOKENIZER
    if not (source / CONFIG_FILE).is_file():
        raise PackageError(f"{source}: no {CONFIG_FILE}; not a model package's tokenizer")
    if (run_tokenizer / CONFIG_FILE).is_file():
        ours, theirs = (json.loads((d / CONFIG_FILE).read_text()) for d in (run_tokenizer, source))
        if ours != theirs:
            raise PackageError(
                f"{run_tokenizer}: the run already has a tokenizer that differs from {source}; "
                "use a new out_dir to start from the package"
            )
        return
    shutil.copytree(source, run_tokenizer, dirs_exist_ok=True)


def load_initial_weights(model: nn.Module, package: Path, task: str) -> int:
    """Copy the package's tensors into ``model``; returns how many. Shapes and names must all match."""
    package_task, _ = read_package_config(package)
    if package_task != task:
        raise PackageError(f"{package}: a {package_task} package cannot initialise a {task} model")
    state = read_weights(package)
    load_state_checked(model, state, str(package), "the run's model")
    return len(state)
