"""Learning-rate schedules: warm-up, peak, decay shape, and what the optimizer actually applies."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Timer
from support import TINY_LEXICON, run_main

from seq2seq.core.config import ConfigError
from seq2seq.experiments import OptimConfig, load_experiment
from seq2seq.training.optim import budget_progress, build_optimizer
from seq2seq.training.schedules import cosine_factor, noam_factor, schedule_factor, timed_cosine_factor


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


def test_timed_cosine_follows_the_clock_not_the_step_count():
    """decay_minutes: the rate is the warm-up ramp times the cosine of the budget's spent fraction."""
    model = torch.nn.Linear(3, 2)
    config = OptimConfig(lr=0.01, warmup_steps=4, schedule="cosine", decay_minutes=2.0, final_lr_ratio=0.1)
    clock = {"spent": 0.0}
    built = build_optimizer(model, config, progress=lambda: clock["spent"])
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    rates = []
    for spent in [0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 0.5, 1.0, 3.0]:  # a slow machine: many steps at 0.5
        clock["spent"] = spent
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:3] == pytest.approx([0.005, 0.0075, 0.01])  # warm-up steps 2-4, nothing spent yet
    assert rates[3] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert rates[4:7] == pytest.approx([0.01 * 0.55] * 3)  # half the budget, whatever the step
    assert rates[7:] == pytest.approx([0.001, 0.001])  # the end of the budget, and past it
    assert timed_cosine_factor(2, 4, 0.5, 0.0) == pytest.approx(0.25)  # warm-up and cosine multiply


def test_timed_cosine_is_checked_when_configured():
    with pytest.raises(ValueError, match="decay_minutes needs schedule=cosine"):
        OptimConfig(schedule="noam", decay_minutes=5.0)
    with pytest.raises(ValueError, match="decay_minutes needs schedule=cosine"):
        OptimConfig(schedule="cosine", decay_steps=500, decay_minutes=5.0)
    with pytest.raises(ValueError, match="a clock"):
        build_optimizer(torch.nn.Linear(2, 2), OptimConfig(schedule="cosine", decay_minutes=5.0))


def test_budget_progress_reads_lightnings_timer_and_continues_after_a_resume():
    trainer = L.Trainer(max_time={"minutes": 10}, logger=False, enable_checkpointing=False)
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    timer.load_state_dict({"time_elapsed": {"train": 150.0}})  # a resumed run had spent 2.5 minutes
    assert budget_progress(trainer, 10.0)() == pytest.approx(0.25)
    assert budget_progress(trainer, 5.0)() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="trainer.max_minutes"):
        budget_progress(L.Trainer(logger=False, enable_checkpointing=False), 10.0)


def test_an_experiment_with_decay_minutes_but_no_time_budget_is_a_one_line_config_error():
    overrides = ["--optim.schedule=cosine", "--optim.decay_steps=null", "--optim.decay_minutes=5"]
    with pytest.raises(ConfigError, match="decay_minutes needs trainer.max_minutes"):
        load_experiment("g2p/cmudict.yaml", overrides)
    assert (
        load_experiment("g2p/cmudict.yaml", [*overrides, "--trainer.max_minutes=5"]).optim.decay_minutes == 5
    )


def _train_tiny_g2p(tmp_path, capsys, d_model: int, *overrides: str) -> list[dict]:
    """Train a one-layer G2P model on the tiny lexicon through the CLI; the rows of its metrics.csv."""
    manifest = tmp_path / "lexicon.jsonl"
    manifest.write_text(
        "".join(json.dumps({"text": w, "target": p[0]}) + "\n" for w, p in TINY_LEXICON.items())
    )
    stack = f"{{num_layers: 1, d_model: {d_model}, num_heads: 2, ffn_dim: {2 * d_model}, dropout: 0.0}}"
    run_main(capsys, "train", "-c", "g2p/cmudict.yaml", f"--out_dir={tmp_path / 'run'}",
             *(f"--data.{s}_manifest={manifest}" for s in ("train", "dev", "test")),
             f"--model.encoder={stack}", f"--model.decoder={stack}", "--data.max_tokens=64",
             "--optim.lr=0.01", "--optim.warmup_steps=2", "--trainer.log_every_steps=1", *overrides,
             check=True)  # fmt: skip
    return list(csv.DictReader((tmp_path / "run" / "logs" / "version_0" / "metrics.csv").open()))


def test_a_time_boxed_training_run_anneals_its_rate_by_the_end_of_the_budget(tmp_path, capsys):
    """Through the CLI and Lightning: the run stops on its clock, long before max_steps, with the rate
    annealed to about final_lr_ratio, whatever number of steps this machine managed."""
    rows = _train_tiny_g2p(tmp_path, capsys, 16, "--optim.decay_steps=null", "--optim.decay_minutes=0.05",
                           "--optim.final_lr_ratio=0.1", "--trainer.max_minutes=0.05",
                           "--trainer.max_steps=100000", "--trainer.val_every_steps=100000")  # fmt: skip
    rates = [float(r["lr-AdamW/pg1"]) for r in rows if r.get("lr-AdamW/pg1")]
    assert 10 < len(rates) < 100000  # stopped by the 3-second clock
    peak = max(rates)
    assert peak == pytest.approx(0.01, rel=0.05)
    after_peak = rates[rates.index(peak) :]
    assert all(b <= a + 1e-12 for a, b in zip(after_peak, after_peak[1:]))  # the cosine only falls
    assert rates[-1] < 0.01 * 0.2  # annealed to near 0.001 by the end of the budget


def test_mixed_precision_training_with_gradient_clipping_runs_and_learns(tmp_path, capsys):
    """Lightning refuses to clip a fused AdamW under AMP; the optimizer is unfused there, so
    ``trainer.precision=bf16-mixed`` (with the default clipping) trains, and the loss falls."""
    rows = _train_tiny_g2p(tmp_path, capsys, 32, "--optim.decay_steps=60", "--trainer.max_steps=60",
                           "--trainer.val_every_steps=1000", "--trainer.precision=bf16-mixed",
                           "--trainer.gradient_clip_val=1.0")  # fmt: skip
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(losses) >= 50
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


def test_the_optimizer_is_fused_unless_told_not_to_be():
    net = torch.nn.Linear(4, 4)
    assert build_optimizer(net, OptimConfig())["optimizer"].defaults["fused"]
    assert not build_optimizer(net, OptimConfig(), allow_fused=False)["optimizer"].defaults["fused"]
