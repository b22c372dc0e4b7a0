"""Plain-line progress for runs whose standard error is a file, not a terminal.

Lightning's TQDM bar redraws itself many times a second; redirected to a log (``make demo > log.txt
2>&1``) every redraw becomes a line. :class:`PlainProgress` writes one readable line every N
optimizer steps instead, and one after each validation::

    step 100/20000 | train_loss 2.3456 | 3.21 steps/s | eta 1:43:12
    step 1000/20000 | val_loss 1.9876
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer

MAX_LINES = 200  # step lines per run: enough to see the loss curve, few enough to read


def progress_interval(log_every_steps: int, max_steps: int, max_lines: int = MAX_LINES) -> int:
    """Steps between progress lines: the smallest multiple of ``log_every_steps`` giving ``<= max_lines``.

    A multiple of the logging interval, so each printed loss is one the loggers also recorded.

    Args:
        log_every_steps: the TrainerConfig's logging interval (>= 1).
        max_steps: steps the run trains for.
        max_lines: most step lines a whole run should print (default :data:`MAX_LINES`).
    """
    return log_every_steps * max(1, math.ceil(max_steps / (log_every_steps * max_lines)))


def format_duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class PlainProgress(Callback):
    """Print one line every ``every`` optimizer steps (step, loss, rate, remaining time) and per validation.

    The loss is the ``train_loss`` that :class:`~seq2seq.training.task.Seq2SeqTask` logs (the latest
    step's, not an average). The rate is measured over the steps since the previous line, so it
    includes data loading and validation, which is what the remaining time depends on. The remaining
    time is the sooner of the step limit and, when the Trainer has ``max_time``, the time budget
    (Lightning's :class:`~lightning.pytorch.callbacks.Timer`, which keeps counting across resumes).
    Only global rank 0 prints.

    Args:
        every: optimizer steps between lines (see :func:`progress_interval`).
        stream: where lines go (default: ``sys.stderr`` at the time of writing, where the bar went).
        clock: seconds from a monotonic clock; tests pass a fake one.
    """

    def __init__(self, every: int, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        if every < 1:
            raise ValueError(f"every={every} must be >= 1")
        self.every, self.stream, self.clock = every, stream, clock
        self.last_step, self.last_time = 0, 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.last_step, self.last_time = trainer.global_step, self.clock()  # a resumed run starts > 0

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # Accumulating or skipped (non-finite) batches leave the step unchanged: print once per step.
        if step % self.every or step == self.last_step:
            return
        now = self.clock()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        fields = [self.step_field(trainer), self.loss_field(trainer, outputs), f"{rate:.2f} steps/s"]
        self.write(trainer, " | ".join([*fields, self.eta_field(trainer, rate)]))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        value = "n/a" if loss is None else f"{float(loss):.4f}"
        self.write(trainer, f"{self.step_field(trainer)} | val_loss {value}")

    @staticmethod
    def step_field(trainer: L.Trainer) -> str:
        limit = trainer.max_steps if trainer.max_steps > 0 else "?"
        return f"step {trainer.global_step}/{limit}"

    @staticmethod
    def loss_field(trainer: L.Trainer, outputs: Any) -> str:
        loss = trainer.callback_metrics.get("train_loss")
        if loss is None and isinstance(outputs, dict) and "loss" in outputs:
            # A module that does not log train_loss: its returned loss, which Lightning has
            # divided by the accumulation count.
            loss = outputs["loss"].detach() * trainer.accumulate_grad_batches
        return "train_loss n/a" if loss is None else f"train_loss {float(loss):.4f}"

    @staticmethod
    def eta_field(trainer: L.Trainer, rate: float) -> str:
        by_steps = (trainer.max_steps - trainer.global_step) / rate if trainer.max_steps > 0 else math.inf
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        by_time = timer.time_remaining() if timer is not None else None
        if by_time is not None and by_time < by_steps:
            return f"eta {format_duration(max(by_time, 0.0))} (time limit)"
        return "eta ?" if math.isinf(by_steps) else f"eta {format_duration(by_steps)}"

    def write(self, trainer: L.Trainer, line: str) -> None:
        if trainer.is_global_zero:
            print(line, file=self.stream or sys.stderr, flush=True)
