"""Plain progress lines replace Lightning's bar when stderr is not a terminal."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ProgressBar, Timer
from torch.utils.data import DataLoader, TensorDataset

from seq2seq.experiments import TrainerConfig
from seq2seq.training.progress import PlainProgress, progress_interval
from seq2seq.training.trainer import build_trainer

STEP_LINE = re.compile(
    r"^step (\d+)/(\d+) \| train_loss (\d+\.\d{4}) \| (\d+\.\d{2}) steps/s \| eta (\d+:\d\d:\d\d)$"
)
VAL_LINE = re.compile(r"^step (\d+)/(\d+) \| val_loss (\d+\.\d{4})$")


class ToyModule(L.LightningModule):
    """Linear regression that logs ``train_loss`` / ``val_loss`` the way ``Seq2SeqTask`` does."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(batches: int) -> DataLoader:
    data = TensorDataset(torch.randn(batches * 2, 4), torch.randn(batches * 2, 1))
    return DataLoader(data, batch_size=2)


def tiny_config(**changes) -> TrainerConfig:
    values = dict(max_steps=12, log_every_steps=3, val_every_steps=6, checkpoint_every_steps=100)
    return TrainerConfig(**{**values, "accelerator": "cpu", "devices": 1, "keep_best": 1, **changes})


@pytest.mark.parametrize(
    ("log_every", "max_steps", "expected"),
    [(20, 20000, 100), (20, 100, 20), (20, 4000, 20), (20, 4001, 40), (1, 1_000_000, 5000)],
)
def test_interval_is_a_multiple_of_log_every_and_caps_the_line_count(log_every, max_steps, expected):
    every = progress_interval(log_every, max_steps)
    assert every == expected
    assert every % log_every == 0 and max_steps // every <= 200


def test_non_interactive_fit_prints_one_line_every_n_steps_and_per_validation(tmp_path, capsys):
    trainer = build_trainer(tiny_config(), tmp_path, interactive=False)
    trainer.fit(ToyModule(), train_dataloaders=loader(32), val_dataloaders=loader(2))
    lines = capsys.readouterr().err.splitlines()

    steps = [m for m in map(STEP_LINE.match, lines) if m]
    assert [int(m[1]) for m in steps] == [3, 6, 9, 12]  # every N = 3, increasing by N
    assert all(int(m[2]) == 12 and float(m[4]) > 0 for m in steps)
    assert steps[-1][5] == "0:00:00"  # nothing left at max_steps
    validations = [m for m in map(VAL_LINE.match, lines) if m]
    assert [int(m[1]) for m in validations] == [6, 12]
    assert not any("\r" in line or "it/s" in line for line in lines)  # no bar redraws


def test_progress_bar_only_when_interactive(tmp_path):
    quiet = build_trainer(tiny_config(), tmp_path, interactive=False)
    assert not any(isinstance(c, ProgressBar) for c in quiet.callbacks)
    assert any(isinstance(c, PlainProgress) for c in quiet.callbacks)
    bar = build_trainer(tiny_config(), tmp_path, interactive=True)
    assert any(isinstance(c, ProgressBar) for c in bar.callbacks)
    assert not any(isinstance(c, PlainProgress) for c in bar.callbacks)


def fake_trainer(step: int, max_steps: int, **extra) -> SimpleNamespace:
    values = dict(callback_metrics={"train_loss": torch.tensor(1.5)}, callbacks=[], is_global_zero=True)
    return SimpleNamespace(global_step=step, max_steps=max_steps, accumulate_grad_batches=1, **values | extra)


def drive(progress: PlainProgress, trainer: SimpleNamespace, steps: list[int]) -> None:
    """Call the batch hook once per batch, a second apart; repeated steps are accumulating batches."""
    progress.on_train_start(trainer, None)
    for step in steps:
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None, None, None, 0)


def test_rate_and_eta_from_the_step_limit():
    out, clock = io.StringIO(), iter(range(0, 100, 1)).__next__
    progress = PlainProgress(every=10, stream=out, clock=clock)
    drive(progress, fake_trainer(0, 100), [5, 10, 10, 15, 20])  # clock: start 0, lines at 1 and 2
    assert out.getvalue().splitlines() == [
        "step 10/100 | train_loss 1.5000 | 10.00 steps/s | eta 0:00:09",
        "step 20/100 | train_loss 1.5000 | 10.00 steps/s | eta 0:00:08",
    ]


def test_eta_is_the_time_budget_when_that_ends_first():
    timer = Timer(duration={"minutes": 1})
    timer.time_remaining = lambda: 30.0
    out, clock = io.StringIO(), iter([0.0, 1.0]).__next__
    progress = PlainProgress(every=10, stream=out, clock=clock)
    drive(progress, fake_trainer(0, 10_000, callbacks=[timer]), [10])
    assert out.getvalue().strip().endswith("| 10.00 steps/s | eta 0:00:30 (time limit)")


def test_only_rank_zero_prints_and_resumed_runs_measure_from_the_resume_step():
    out, clock = io.StringIO(), iter([0.0, 2.0]).__next__
    drive(PlainProgress(every=10, stream=out, clock=clock), fake_trainer(500, 1000), [510])
    assert "step 510/1000 | train_loss 1.5000 | 5.00 steps/s | eta 0:01:38" in out.getvalue()
    silent = io.StringIO()
    drive(PlainProgress(every=10, stream=silent), fake_trainer(0, 100, is_global_zero=False), [10])
    assert silent.getvalue() == ""
