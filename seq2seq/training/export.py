"""Checkpoints -> model package: pick, average, re-estimate norm statistics, write safetensors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from seq2seq.nn.norms import batch_statistic_norms
from seq2seq.package import PackageError, build_model, save_package
from seq2seq.text import load_tokenizer
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


def export_run(
    checkpoint: str | Path,
    out_dir: str | Path,
    average: int = 1,
    trust: bool = False,
    stats_batches: int = 50,
    select: str = "best",
) -> Path:
    """Export a checkpoint, or the average of a run folder's ``average`` best (or last) checkpoints."""
    checkpoint = Path(checkpoint)
    paths = choose_checkpoints(checkpoint, average, select) if checkpoint.is_dir() else [checkpoint]
    loaded = [load_checkpoint_file(p, weights_only=not trust) for p in paths]
    meta = loaded[-1].get("seq2seq")
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"{paths[-1]}: not a seq2seq training checkpoint (no 'seq2seq' entry)")
    from seq2seq.config import experiment_classes, from_dict

    task = meta["task"]
    experiment = from_dict(experiment_classes()[task], meta["config"])
    state = average_state_dicts([model_state(c) for c in loaded])
    model = build_model(task, experiment)
    model.load_state_dict(state)
    if len(paths) > 1 and batch_statistic_norms(model):
        used = recompute_norm_statistics(model, *_training_batches(task, experiment, meta, stats_batches))
        log.info("re-estimated norm statistics on %d training batches", used)
    tokenizer_dir = Path(meta["tokenizer_dir"])
    if not (tokenizer_dir / "tokenizer.json").is_file():  # never copy an arbitrary folder into a package
        raise PackageError(f"{tokenizer_dir}: the run's tokenizer folder is missing (no tokenizer.json)")
    log.info("exporting %s from %s", task, ", ".join(p.name for p in paths))
    return save_package(out_dir, task, meta["config"], model.state_dict(), tokenizer_dir)


def _training_batches(task: str, experiment, meta: dict, limit: int):
    """(batches, forward) over the first ``limit`` training batches of the run's data."""
    from itertools import islice

    from seq2seq.training.run import build_datamodule

    datamodule = build_datamodule(task, experiment, load_tokenizer(meta["tokenizer_dir"]))
    datamodule.setup("fit")
    batches = islice(iter(datamodule.train_dataloader()), limit)
    if task == "asr":
        from seq2seq.training.asr_module import decoder_io

        def forward(model, batch):
            inputs, _ = decoder_io(batch.tokens, batch.token_lengths)
            model(batch.features, batch.feature_lengths, inputs, batch.token_lengths + 1)
    else:

        def forward(model, batch):
            model(batch.tokens, batch.token_lengths, batch.mels, batch.mel_lengths)

    return batches, forward
