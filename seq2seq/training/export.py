"""Checkpoints -> model package: pick, average, re-estimate norm statistics, write safetensors."""

from __future__ import annotations

import logging
import re
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from seq2seq.core.package import PackageError, save_package
from seq2seq.core.text import load_tokenizer
from seq2seq.inference.lexicon import check_word_list
from seq2seq.nn.norms import batch_statistic_norms
from seq2seq.training.checkpointing import CheckpointError, load_checkpoint_file
from seq2seq.training.trainer import checkpoint_dir

log = logging.getLogger(__name__)
MODEL_PREFIX = "model."


def choose_checkpoints(run_dir: Path, count: int, select: str = "best") -> list[Path]:
    """The ``count`` checkpoints with the lowest validation loss (``select="best"``: files
    ``best-step=..-val_loss=..``) or the most recent validated ones (``"last"``: ``recent-step=..``)."""
    scored = []
    pattern, key = {
        "best": ("best-*.ckpt", r"val_loss=([0-9.]+?)(?:\.ckpt|-v\d+\.ckpt)$"),
        "last": ("recent-*.ckpt", r"step=(\d+)"),
    }[select]
    for path in checkpoint_dir(run_dir).glob(pattern):
        match = re.search(key, path.name)
        if match:
            value = float(match.group(1))
            scored.append((value if select == "best" else -value, path))
    scored.sort()
    chosen = [p for _, p in scored[:count]]
    if not chosen:
        last = checkpoint_dir(run_dir) / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(f"{run_dir}: no checkpoints found under {checkpoint_dir(run_dir)}")
        chosen = [last]
    return chosen


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of floating-point tensors; integer buffers (step counters) are copied from the last state."""
    averaged = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value.clone()
    return averaged


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {
        k[len(MODEL_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODEL_PREFIX)
    }


@torch.no_grad()
def recompute_norm_statistics(model: nn.Module, batches, forward) -> int:
    """Re-estimate running statistics of batch-statistic norms as a plain average over ``batches``.

    Averaged weights no longer match any running statistics seen in training (Izmailov et al. 2018,
    SWA), so they are measured again: norms in train mode, everything else (dropout) in eval mode.

    Returns:
        number of batches used.
    """
    norms = batch_statistic_norms(model)
    saved = [n.momentum for n in norms]
    for n in norms:
        n.running_var.fill_(1.0)
        if hasattr(n, "running_mean"):
            n.running_mean.zero_()
    model.eval()
    count = 0
    for count, batch in enumerate(batches, start=1):
        for n in norms:
            n.train()
            n.momentum = 1.0 / count  # cumulative average
        forward(model, batch)
    for n, momentum in zip(norms, saved):
        n.momentum = momentum
    model.eval()
    return count


def read_checkpoints(
    checkpoint: str | Path, average: int = 1, trust: bool = False, select: str = "best"
) -> tuple[list[Path], list[dict], dict]:
    """The chosen checkpoint files, their contents and the run's metadata (task, config, tokenizer)."""
    checkpoint = Path(checkpoint)
    paths = choose_checkpoints(checkpoint, average, select) if checkpoint.is_dir() else [checkpoint]
    loaded = [load_checkpoint_file(p, weights_only=not trust) for p in paths]
    meta = loaded[-1].get("seq2seq")
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"{paths[-1]}: not a seq2seq training checkpoint (no 'seq2seq' entry)")
    return paths, loaded, meta


def export_run(
    paths: list[Path],
    loaded: list[dict],
    meta: dict,
    experiment,
    module_class: type,
    datamodule_class: type,
    out_dir: str | Path,
    stats_batches: int = 50,
    lexicon: str | Path | None = None,
) -> Path:
    """Average the checkpoints' weights, re-estimate norm statistics, write the package (with the word
    list ``lexicon`` when given).

    The statistics pass runs the task's own LightningModule (``forward_batch``) over its own data
    module, so export never re-implements a task's forward pass.
    """
    tokenizer_dir = Path(meta["tokenizer_dir"])
    if not (tokenizer_dir / "tokenizer.json").is_file():  # never copy an arbitrary folder into a package
        raise PackageError(f"{tokenizer_dir}: the run's tokenizer folder is missing (no tokenizer.json)")
    tokenizer = load_tokenizer(tokenizer_dir)
    if lexicon is not None:
        check_word_list(lexicon, experiment.task, tokenizer)
    module = module_class(experiment, tokenizer, str(tokenizer_dir)).eval()  # no SpecAugment
    model = module.model
    model.load_state_dict(average_state_dicts([model_state(c) for c in loaded]))
    if len(paths) > 1 and batch_statistic_norms(model):
        datamodule = datamodule_class(experiment.data, tokenizer)
        datamodule.setup("fit")
        batches = islice(iter(datamodule.train_dataloader()), stats_batches)
        used = recompute_norm_statistics(model, batches, lambda _, batch: module.forward_batch(batch))
        log.info("re-estimated norm statistics on %d training batches", used)
    log.info("exporting %s from %s", experiment.task, ", ".join(p.name for p in paths))
    return save_package(out_dir, experiment.task, meta["config"], model.state_dict(), tokenizer_dir, lexicon)
