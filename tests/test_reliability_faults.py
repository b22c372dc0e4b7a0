"""Faults: kills, torn writes, non-finite losses and broken files in a batch never lose finished work.

The table in docs/reliability.md lists each case with the test here that proves it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile
import torch
from support import (
    CONFIGS,
    batches_per_epoch,
    cli_command,
    error_lines,
    run_cli,
    tiny_asr_overrides,
    tiny_asr_package,
    write_jsonl,
    write_tone,
)

from seq2seq.core.package import PackageError, save_package
from seq2seq.experiments import load_experiment
from seq2seq.tasks import load_model_package as load_package
from seq2seq.training.checkpointing import CheckpointError, atomic_torch_save, load_checkpoint_file

# ---------------------------------------------------------------------------------------------
# Atomic writes


class Killed(BaseException):
    """Stands in for SIGKILL arriving mid-write (BaseException: nothing may swallow it)."""


def test_checkpoint_write_killed_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def torn_save(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)  # half the bytes reached the disk
        raise Killed

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(Killed):
        atomic_torch_save({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_is_a_clear_one_line_error(tmp_path, damage):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(4096)}[damage])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint_file(path)
    assert str(caught.value).startswith(str(path)) and "truncated or corrupt" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_resume_refuses_a_damaged_last_checkpoint_by_name(tmp_path):
    from seq2seq.training.checkpointing import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    path.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(CheckpointError, match="last.ckpt: checkpoint is truncated or corrupt"):
        AtomicCheckpointIO().load_checkpoint(path)


@pytest.fixture
def package_dir(tmp_path) -> Path:
    return tiny_asr_package(tmp_path / "pkg", seed=0)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_package(directory).model.state_dict()


@pytest.mark.parametrize("stage", ["weights", "tokenizer", "swap"])
def test_package_write_killed_midway_leaves_the_previous_package(package_dir, monkeypatch, stage):
    import seq2seq.core.package as package_module

    before = _weights(package_dir)
    real_save_file = package_module.save_file

    def torn_weights(tensors, path):
        real_save_file(tensors, path)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise Killed

    def fail(*args, **kwargs):
        raise Killed

    target = {
        "weights": ("save_file", torn_weights),
        "tokenizer": ("shutil.copytree", fail),
        "swap": ("_replace_dir", fail),
    }[stage]
    monkeypatch.setattr(f"seq2seq.core.package.{target[0]}", target[1])
    other = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in before.items()}
    with pytest.raises(Killed):
        save_package(
            package_dir,
            "asr",
            json.loads((package_dir / "config.json").read_text())["experiment"],
            other,
            package_dir / "tokenizer",
        )
    monkeypatch.undo()
    after = _weights(package_dir)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in package_dir.parent.iterdir()) == ["pkg", "pkg-tokenizer"]  # no debris


def test_package_replacement_is_complete_and_readable_by_others(package_dir):
    config = json.loads((package_dir / "config.json").read_text())["experiment"]
    new = {k: v + 1 if v.is_floating_point() else v for k, v in _weights(package_dir).items()}
    save_package(package_dir, "asr", config, new, package_dir.parent / "pkg-tokenizer")
    after = _weights(package_dir)
    assert all(torch.equal(new[k], after[k]) for k in new)
    umask = os.umask(0o022)
    os.umask(umask)
    assert package_dir.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: others can read it
    assert sorted(p.name for p in package_dir.parent.iterdir()) == ["pkg", "pkg-tokenizer"]


def test_package_never_replaces_a_folder_that_is_not_a_package(tmp_path, package_dir):
    precious = tmp_path / "my work"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    config = json.loads((package_dir / "config.json").read_text())["experiment"]
    with pytest.raises(PackageError, match="my work: exists and is not a model package"):
        save_package(precious, "asr", config, _weights(package_dir), package_dir / "tokenizer")
    assert (precious / "thesis.tex").read_text() == "years of work"


# ---------------------------------------------------------------------------------------------
# Transcribing a folder with broken files


def _broken_files(folder: Path, good: Path) -> list[Path]:
    """Ten different ways for a file with an audio extension to be unusable."""
    data = good.read_bytes()
    broken = {
        "cut.wav": data[: len(data) // 2],
        "header-only.wav": data[:30],
        "empty.wav": b"",
        "text.wav": b"not audio at all\n" * 20,
        "text.flac": b"hello\n" * 50,
        "text.mp3": b"\x00" * 700,
        "junk.ogg": os.urandom(3000),
    }
    paths = []
    for name, content in broken.items():
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    nan = np.full(4800, 0.1, np.float32)
    nan[10] = np.nan
    soundfile.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    soundfile.write(folder / "no-samples.wav", np.zeros(0, np.float32), 16000)
    (folder / "dangling.wav").symlink_to(folder / "deleted-target.wav")
    return paths + [folder / "nan.wav", folder / "no-samples.wav", folder / "dangling.wav"]


@pytest.mark.slow
def test_transcribing_100_files_with_10_broken_keeps_90_and_reports_10(tmp_path):
    package = tiny_asr_package(tmp_path / "pkg")
    folder = tmp_path / "audio in"
    goods = [write_tone(folder / f"good-{i:03d}.wav", 0.3) for i in range(90)]
    broken = _broken_files(folder, goods[0])
    assert len(broken) == 10
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "transcribe",
        str(package),
        str(folder),
        "--beam-size",
        "1",
        "--ctc-weight",
        "0",
        "--batch-size",
        "16",
        "--output-format",
        "jsonl",
        "--output",
        str(out),
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    transcribed = [json.loads(line)["audio_filepath"] for line in out.read_text().splitlines()]
    assert sorted(transcribed) == sorted(map(str, goods))
    errors = error_lines(result.stderr)
    assert len(errors) == 10
    for path in broken:
        assert sum(str(path) in line for line in errors) == 1, path
    assert "10 of 100 files failed; 90 transcribed" in result.stderr


# ---------------------------------------------------------------------------------------------
# Non-finite losses, and broken utterances in a real training run


class PoisonBatches(L.Callback):
    """Fills the features of chosen training batches (1-based call count) with NaN."""

    def __init__(self, poison):
        self.poison, self.calls = poison, 0
        self.last_good: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.calls += 1
        if self.poison(self.calls):
            if not self.poison(self.calls - 1):  # weights and buffers before this run of bad batches
                self.last_good = {k: v.detach().clone() for k, v in module.state_dict().items()}
            batch.features.fill_(float("nan"))


def _dirty_manifest(corpus: dict[str, Path], folder: Path) -> Path:
    """The tiny training set plus a missing file, an undecodable one, an empty and an absurdly long text."""
    base = corpus["train"].parent
    records = []
    for line in corpus["train"].read_text().splitlines():
        record = json.loads(line)
        record["audio_filepath"] = str(base / record["audio_filepath"])
        records.append(record)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nonsense")
    first = records[0]["audio_filepath"]
    records += [
        {"audio_filepath": str(folder / "gone.wav"), "duration": 1.0, "text": "gone", "id": "gone"},
        {"audio_filepath": str(folder / "broken.wav"), "duration": 1.0, "text": "broken", "id": "broken"},
        {"audio_filepath": first, "duration": 1.0, "text": "", "id": "empty"},
        {"audio_filepath": first, "duration": 1.0, "text": "words " * 3000, "id": "long"},
        '{"audio_filepath": "x.wav", "duration": 1.0, "text": "torn line',
    ]
    return write_jsonl(folder / "train.jsonl", records)


@pytest.mark.slow
def test_nan_losses_are_skipped_then_stop_the_run_keeping_the_last_good_state(tiny_corpus, tmp_path, caplog):
    from seq2seq.tasks import train

    corpus = {**tiny_corpus, "train": _dirty_manifest(tiny_corpus, tmp_path)}
    out = tmp_path / "run"
    experiment = load_experiment(
        CONFIGS / "asr" / "small.yaml",
        tiny_asr_overrides(
            corpus,
            out,
            **{"trainer.max_steps": 20, "trainer.max_bad_batches": 2, "trainer.val_every_steps": 2},
        ),
    )
    # Batch 2 is bad alone (skipped, training goes on); batches 5 and 6 are two in a row: the run stops.
    poison = PoisonBatches(lambda call: call == 2 or call >= 5)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as caught:
        train(experiment, callbacks=[poison])
    assert "stopped at step 6 after 2 consecutive non-finite losses" in str(caught.value)
    assert poison.calls == 6
    skipped = [r.getMessage() for r in caplog.records if "non-finite loss, batch skipped" in r.getMessage()]
    assert len(skipped) == 3
    last = load_checkpoint_file(out / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6  # skipped batches count as (empty) steps
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    for key, value in poison.last_good.items():  # the bad batches changed nothing
        assert torch.equal(last["state_dict"][key], value), key
    messages = " ".join(r.getMessage() for r in caplog.records)
    for words in (
        "gone.wav: no such file",
        "broken.wav: cannot decode",
        "'empty' has empty text",
        "'long' has 18000 characters",
        "malformed JSON",
    ):
        assert words in messages, words


# ---------------------------------------------------------------------------------------------
# SIGKILL mid-training, then resume


def _train_command(corpus: dict[str, Path], out: Path) -> list[str]:
    overrides = tiny_asr_overrides(
        corpus,
        out,
        **{"trainer.max_steps": 12, "trainer.checkpoint_every_steps": 1, "trainer.val_every_steps": 5},
    )
    return cli_command("train", "-c", CONFIGS / "asr" / "small.yaml", *overrides)


def _step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


def _logged_steps(run_dir: Path, version: int) -> int:
    with open(run_dir / "logs" / f"version_{version}" / "metrics.csv") as handle:
        return sum(1 for row in csv.DictReader(handle) if row.get("train_loss"))


@pytest.mark.slow
def test_sigkill_at_a_random_step_resumes_with_same_step_schedule_and_sampler(tiny_corpus, tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    kill_after = int(np.random.default_rng().integers(2, 7))
    process = subprocess.Popen(
        _train_command(tiny_corpus, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while _step(last) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"training ended before step {kill_after}: {process.stderr.read()[-2000:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = load_checkpoint_file(last)
    assert kill_after <= at_kill["global_step"] < 12

    resumed = subprocess.run(_train_command(tiny_corpus, killed), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    uninterrupted = subprocess.run(
        _train_command(tiny_corpus, reference), capture_output=True, text=True, timeout=600
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    final, expected = (
        load_checkpoint_file(last),
        load_checkpoint_file(reference / "checkpoints" / "last.ckpt"),
    )
    assert final["global_step"] == expected["global_step"] == 12
    # The resumed run trained only the steps the killed one had not checkpointed.
    assert _logged_steps(killed, 1) == 12 - at_kill["global_step"]
    assert final["lr_schedulers"] == expected["lr_schedulers"]
    steps = [s["step"] for s in final["optimizer_states"][0]["state"].values()]
    assert all(int(s) == 12 for s in steps)  # Adam's step counts continued rather than restarting
    sampler, expected_sampler = (
        final["ASRDataModule"]["train_sampler"],
        expected["ASRDataModule"]["train_sampler"],
    )
    assert sampler == expected_sampler
    per_epoch = batches_per_epoch(tiny_corpus["train"])
    for checkpoint in (at_kill, final):
        position = checkpoint["ASRDataModule"]["train_sampler"]
        assert position["epoch"] * per_epoch + position["batches_yielded"] == checkpoint["global_step"]
