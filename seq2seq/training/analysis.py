"""The ``analysis.landscape_every`` callback: probes the training batch every N steps (see ``landscape``).

Records go to ``<run>/analysis/probes.jsonl`` (one JSON object a probe: step, learning rate, loss band,
gradient predictiveness, beta-smoothness, per-layer ICS, per-norm batch-vs-running statistics, seconds)
and their scalars (layer means) to the run's loggers as ``analysis/...``. Off (``landscape_every: 0``),
no callback is added at all, so training is untouched.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from seq2seq.experiments import AnalysisConfig
from seq2seq.training.landscape import adamw_update, probe, summary


class LandscapeProbe(Callback):
    """Before every ``config.landscape_every``-th optimizer step, probe that step's batch.

    The probe runs in ``on_train_batch_start``, on the batch the step is about to train on, under the
    precision plugin's autocast, and restores weights, buffers and generators before the step runs; the
    optimizer is never called. Training-step time is measured on the steps in between, so each record
    says what one probe cost in training steps.
    """

    def __init__(self, config: AnalysisConfig, out_dir: str | Path):
        self.config = config
        self.path = Path(out_dir) / "analysis" / "probes.jsonl"
        self.step_seconds: list[float] = []
        self._started: float | None = None
        self._probed_step: int | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        """Every N-th optimizer step, once (with gradient accumulation, on its first micro-batch)."""
        step = trainer.global_step
        return step % self.config.landscape_every == 0 and step != self._probed_step

    def on_train_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        if batch is None or not self._due(trainer):
            self._started = time.perf_counter()
            return
        self._probed_step = trainer.global_step
        start = time.perf_counter()
        optimizer = trainer.optimizers[0]
        lr = float(optimizer.param_groups[0]["lr"])
        update = None
        if self.config.ics_update == "optimizer":
            update = adamw_update(optimizer, trainer.gradient_clip_val)
        with trainer.precision_plugin.forward_context():
            result = probe(
                module.model,
                lambda: module.losses(batch)["loss"],
                lr,
                self.config.step_scales,
                self.config.ics,
                update=update,
            )
        seconds = time.perf_counter() - start
        mean_step = sum(self.step_seconds) / len(self.step_seconds) if self.step_seconds else None
        record = {"step": trainer.global_step, **result, "seconds": seconds, "train_step_seconds": mean_step}
        self._write(trainer, record)
        self._started = None  # this step's time includes the probe: not counted

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        if self._started is not None:
            self.step_seconds = [*self.step_seconds[-49:], time.perf_counter() - self._started]
        self._started = None

    def _write(self, trainer: L.Trainer, record: dict) -> None:
        if trainer.global_rank != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {f"analysis/{k}": v for k, v in summary(record).items() if k not in ("step", "lr")}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)


def analysis_callbacks(config: AnalysisConfig, out_dir: str | Path) -> list[Callback]:
    """The probe callback when ``landscape_every > 0``, else nothing."""
    return [LandscapeProbe(config, out_dir)] if config.landscape_every > 0 else []
