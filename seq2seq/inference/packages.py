"""A package's model loaded without the task table: the caller says how to build the model from its
experiment config (``seq2seq.tasks`` looks the class up in the table; a G2P front-end knows it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.core.config import ConfigError
from seq2seq.core.package import (
    LEXICON,
    ModelPackage,
    PackageError,
    load_weights_into,
    read_package_config,
    read_package_precision,
    read_package_tokenizer,
)
from seq2seq.experiments import experiment_from_dict


def load_model_package_with(
    directory: str | Path, build_model: Callable[[Any], nn.Module], device: str | torch.device = "cpu"
) -> ModelPackage:
    """Config, model (``build_model(experiment)``, eval mode, on ``device``) and tokenizer of a package;
    nothing is unpickled."""
    directory = Path(directory)
    name, data = read_package_config(directory)
    where = str(directory / "config.json")
    try:
        experiment = experiment_from_dict({**data, "task": name}, where)
    except ConfigError as error:
        message = str(error)
        raise PackageError(message if message.startswith(where) else f"{where}: {message}") from None
    model = build_model(experiment)
    load_weights_into(model, directory, device)
    tokenizer = read_package_tokenizer(directory)
    model = model.to(device).eval()
    if read_package_precision(directory) == "int8":
        if torch.device(device).type != "cpu":
            raise PackageError(f"{directory}: an int8 package runs on the CPU only, not on {device}")
        from seq2seq.inference.quantization import quantize_torch

        model = quantize_torch(model)
    lexicon = directory / LEXICON if (directory / LEXICON).is_file() else None
    return ModelPackage(name, experiment, model, tokenizer, directory, lexicon)
