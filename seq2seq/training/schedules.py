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


def cosine_factor(step: int, warmup_steps: int, decay_steps: int, final: float = 0.0) -> float:
    """Linear warm-up, then a half cosine from 1.0 down to ``final`` at ``decay_steps``, flat after.

    For time-boxed runs: the rate anneals by the end of the budget instead of decaying forever (Noam),
    which leaves a short run at a lower loss.
    """
    step = max(step, 1)
    if step < warmup_steps:
        return step / warmup_steps
    return annealed(min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps)), final)


def annealed(progress: float, final: float = 0.0) -> float:
    """The half cosine from 1.0 at ``progress`` 0 down to ``final`` at 1 (flat after)."""
    progress = min(max(progress, 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def timed_cosine_factor(step: int, warmup_steps: int, progress: float, final: float = 0.0) -> float:
    """Linear warm-up by steps times the half cosine over the time budget, ``progress`` in [0, 1].

    The two multiply instead of following one another, so the rate has no jump where warm-up ends: warm-up
    takes a few percent of the budget, where the cosine is still ~1.
    """
    return constant_factor(step, warmup_steps) * annealed(progress, final)


def schedule_factor(
    name: str, step: int, warmup_steps: int, decay_steps: int | None = None, final: float = 0.0
) -> float:
    match name:
        case "noam":
            return noam_factor(step, warmup_steps)
        case "constant":
            return constant_factor(step, warmup_steps)
        case "cosine" if decay_steps is not None:
            return cosine_factor(step, warmup_steps, decay_steps, final)
        case "cosine":
            raise ValueError("schedule=cosine needs decay_steps")
    raise ValueError(f"schedule={name!r} is not valid; choose one of noam, constant, cosine")
