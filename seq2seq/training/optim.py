"""Optimizer, schedule and the non-finite-loss guard shared by the LightningModules."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import Timer
from torch import nn

from seq2seq.experiments import OptimConfig
from seq2seq.training.schedules import schedule_factor, timed_cosine_factor

log = logging.getLogger(__name__)


def build_optimizer(
    model: nn.Module,
    config: OptimConfig,
    progress: Callable[[], float] | None = None,
    allow_fused: bool = True,
) -> dict:
    """AdamW (no decay on norms and biases) with a per-step warm-up schedule, in Lightning's format.

    ``progress`` returns the fraction of the time budget spent; ``config.decay_minutes`` needs it (see
    :func:`budget_progress`).

    The fused implementation updates every parameter in one kernel per group instead of ~10 small ops
    per tensor (6 % of a CPU training step on the reference workload); used where PyTorch has it and
    ``allow_fused``: Lightning refuses to clip the gradients of a fused optimizer under mixed precision.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or name.endswith(".bias") else decay).append(parameter)
    fused = allow_fused and all(
        p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in decay + no_decay
    )
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=tuple(config.betas),
        fused=fused or None,
    )
    if config.decay_minutes is None:

        def factor(step: int) -> float:
            return schedule_factor(
                config.schedule, step + 1, config.warmup_steps, config.decay_steps, config.final_lr_ratio
            )
    elif progress is None:
        raise ValueError("optim.decay_minutes needs a clock of the training time (trainer.max_minutes)")
    else:

        def factor(step: int) -> float:
            return timed_cosine_factor(step + 1, config.warmup_steps, progress(), config.final_lr_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def budget_progress(trainer, minutes: float) -> Callable[[], float]:
    """The fraction of ``minutes`` of training time spent, from Lightning's Timer (``trainer.max_minutes``),
    which keeps counting across resumes, so a resumed run continues its schedule where it stopped.

    Under DDP every process must step with the same rate, or their weights would drift apart: rank 0's
    clock is broadcast (one scalar per step; Lightning's Timer broadcasts its stop flag as often).
    """
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None:
        raise ValueError("optim.decay_minutes needs trainer.max_minutes: the budget's clock")

    def progress() -> float:
        spent = timer.time_elapsed("train") / (60.0 * minutes)
        return float(trainer.strategy.broadcast(spent)) if trainer.world_size > 1 else spent

    return progress


class BadBatchGuard:
    """Skips batches whose loss is NaN or infinite; stops training after too many in a row.

    A skipped batch has no backward pass, so the weights and Adam's moments stay as they were; Lightning
    still counts it as a step (``global_step`` and the sampler position both count batches consumed).

    Under DDP every process must agree to skip, or their gradient all-reduces would fall out of step:
    the finite flag is reduced with MIN across processes first.
    """

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.stopped_at: int | None = None  # the step at which the guard stopped training, if it did

    def check(self, loss: torch.Tensor, trainer, step: int) -> bool:
        finite = torch.isfinite(loss.detach()).float()
        if trainer is not None and trainer.world_size > 1:
            finite = trainer.strategy.reduce(finite, reduce_op="min")
        if bool(finite > 0):
            self.consecutive = 0
            return True
        self.consecutive += 1
        log.warning("step %d: non-finite loss, batch skipped (%d in a row)", step, self.consecutive)
        if self.consecutive >= self.max_consecutive and trainer is not None:
            log.error(
                "stopping: %d consecutive non-finite losses; the last good checkpoint is kept",
                self.consecutive,
            )
            trainer.should_stop = True
            self.stopped_at = step
        return False
