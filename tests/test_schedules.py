"""Learning-rate schedules: warm-up, peak, decay shape, and what the optimizer actually applies."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.experiments import OptimConfig
from seq2seq.training.optim import build_optimizer
from seq2seq.training.schedules import cosine_factor, noam_factor, schedule_factor


def test_noam_peaks_at_warmup_then_decays_as_inverse_square_root():
    assert noam_factor(50, 100) == pytest.approx(0.5)
    assert noam_factor(100, 100) == pytest.approx(1.0)
    assert noam_factor(400, 100) == pytest.approx(0.5)


def test_cosine_warms_up_anneals_to_final_and_stays():
    factors = [cosine_factor(s, 10, 110, final=0.1) for s in range(1, 200)]
    assert factors[4] == pytest.approx(0.5)  # step 5 of a 10-step warm-up
    assert factors[9] == pytest.approx(1.0)
    assert cosine_factor(60, 10, 110, final=0.1) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    decay = factors[9:110]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert factors[109:] == pytest.approx([0.1] * 90)


def test_cosine_needs_a_decay_length():
    with pytest.raises(ValueError, match="decay_steps"):
        schedule_factor("cosine", 5, 10)
    with pytest.raises(ValueError, match="decay_steps > warmup_steps"):
        OptimConfig(schedule="cosine", warmup_steps=100, decay_steps=50)
    with pytest.raises(ValueError, match="not valid"):
        schedule_factor("linear", 5, 10)


def test_optimizer_applies_the_configured_schedule():
    model = torch.nn.Linear(3, 2)
    config = OptimConfig(lr=0.01, warmup_steps=4, schedule="cosine", decay_steps=20, final_lr_ratio=0.0)
    built = build_optimizer(model, config)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(25):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.0025) and rates[3] == pytest.approx(0.01)
    assert rates[11] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert rates[19:] == pytest.approx([0.0] * 6)
