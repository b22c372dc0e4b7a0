"""Learning-rate schedules as multipliers of the peak rate (for ``LambdaLR``)."""

from __future__ import annotations

import math


def noam_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up to 1.0 at ``warmup_steps``, then ``sqrt(warmup / step)`` (Vaswani et al. 2017)."""
    step = max(step, 1)
    if warmup_steps <= 0:
        return 1.0 / math.sqrt(step)
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


def constant_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up, then flat."""
    return 1.0 if warmup_steps <= 0 else min(max(step, 1) / warmup_steps, 1.0)


def schedule_factor(name: str, step: int, warmup_steps: int) -> float:
    match name:
        case "noam":
            return noam_factor(step, warmup_steps)
        case "constant":
            return constant_factor(step, warmup_steps)
    raise ValueError(f"schedule={name!r} is not valid; choose one of noam, constant")
