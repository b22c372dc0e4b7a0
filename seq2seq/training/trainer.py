"""Build Lightning's Trainer from a :class:`TrainerConfig`: checkpoints, logs, resume."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from seq2seq.experiments import TrainerConfig
from seq2seq.training.checkpointing import AtomicCheckpointIO
from seq2seq.training.progress import PlainProgress, progress_interval


class SaveLastOnExit(Callback):
    """Write ``last.ckpt`` when fitting ends for any reason (step limit, time budget, bad batches)."""

    def __init__(self, directory: Path):
        self.path = directory / "last.ckpt"

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # full state, so the run can resume


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def last_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint an interrupted run resumes from, if any."""
    path = checkpoint_dir(out_dir) / "last.ckpt"
    return path if path.is_file() else None


def build_trainer(
    config: TrainerConfig,
    out_dir: str | Path,
    callbacks: list[Callback] | None = None,
    interactive: bool | None = None,
) -> L.Trainer:
    """A Trainer that logs to TensorBoard and CSV under ``out_dir`` and checkpoints atomically.

    ``checkpoints/last.ckpt`` is refreshed every ``checkpoint_every_steps`` (resume point); the
    ``keep_best`` checkpoints by validation loss are kept for averaging.

    Args:
        config: what the Trainer is told.
        out_dir: the run's folder (logs, checkpoints).
        callbacks: extra callbacks, after ours.
        interactive: show Lightning's progress bar (default: whether stderr is a terminal). Otherwise
            :class:`PlainProgress` prints a line every ``log_every_steps`` or a multiple of it (at most
            about 200 a run), because a bar redirected to a file writes a line per redraw.
    """
    if interactive is None:
        interactive = sys.stderr.isatty()
    progress = (
        [] if interactive else [PlainProgress(progress_interval(config.log_every_steps, config.max_steps))]
    )
    out_dir = Path(out_dir)
    ckpt_dir = checkpoint_dir(out_dir)
    periodic = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last",
        every_n_train_steps=config.checkpoint_every_steps,
        save_top_k=1,
        enable_version_counter=False,
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{step}-{val_loss:.4f}",
        monitor="val_loss",
        mode="min",
        save_top_k=config.keep_best,
        save_on_train_epoch_end=False,
    )
    recent = ModelCheckpoint(  # the newest validated checkpoints, for averaging the last N
        dirpath=ckpt_dir,
        filename="recent-{step}",
        monitor="step",
        mode="max",
        save_top_k=config.keep_best,
        save_on_train_epoch_end=False,
    )
    return L.Trainer(
        default_root_dir=out_dir,
        max_steps=config.max_steps,
        max_epochs=-1,
        max_time={"minutes": config.max_minutes} if config.max_minutes else None,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val or None,
        val_check_interval=config.val_every_steps * config.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        log_every_n_steps=config.log_every_steps,
        num_sanity_val_steps=0,
        # A resumed run appends a new CSV version (logs/version_N) instead of overwriting the old one.
        logger=[
            TensorBoardLogger(out_dir, name="logs", version="tensorboard"),
            CSVLogger(out_dir, name="logs"),
        ],
        callbacks=[
            periodic,
            best,
            recent,
            LearningRateMonitor("step"),
            SaveLastOnExit(ckpt_dir),
            *progress,
            *(callbacks or []),
        ],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=interactive,
        use_distributed_sampler=False,  # our bucketing sampler shards by rank itself
    )
