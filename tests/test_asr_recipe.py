"""The ASR recipe end to end on a tiny real corpus: train, resume, export, load, transcribe, evaluate."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from support import CONFIGS, batches_per_epoch, error_lines, run_cli, tiny_asr_overrides

from seq2seq.experiments import load_experiment
from seq2seq.tasks import load_model_package as load_package
from seq2seq.training.checkpointing import load_checkpoint_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tiny_corpus, tmp_path_factory):
    from seq2seq.tasks import train

    out = tmp_path_factory.mktemp("asr_run")
    experiment = load_experiment(CONFIGS / "asr" / "small.yaml", tiny_asr_overrides(tiny_corpus, out))
    train(experiment)
    return out


def train_losses(run_dir) -> list[float]:
    losses = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with open(path) as handle:
            losses += [float(r["train_loss"]) for r in csv.DictReader(handle) if r.get("train_loss")]
    return losses


def test_training_writes_resumable_checkpoints_that_load_without_pickle(trained_run, tiny_corpus):
    checkpoint = load_checkpoint_file(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["seq2seq"]["task"] == "asr"
    # The sampler position, for mid-epoch resume: step 6 was batch (6 - 1) % N + 1 of epoch (6 - 1) // N.
    per_epoch = batches_per_epoch(tiny_corpus["train"])
    position = checkpoint["ASRDataModule"]["train_sampler"]
    assert (position["epoch"], position["batches_yielded"]) == ((6 - 1) // per_epoch, (6 - 1) % per_epoch + 1)
    assert len(train_losses(trained_run)) == 6


def test_rerunning_resumes_from_the_last_step(trained_run, tiny_corpus):
    from seq2seq.tasks import train

    experiment = load_experiment(
        CONFIGS / "asr" / "small.yaml",
        tiny_asr_overrides(tiny_corpus, trained_run, **{"trainer.max_steps": 8}),
    )
    train(experiment)
    checkpoint = load_checkpoint_file(trained_run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 8
    assert len(train_losses(trained_run)) == 8  # steps 7 and 8 only were added


def test_exported_package_reproduces_the_checkpoint(trained_run, tmp_path):
    from seq2seq.tasks import export as export_run
    from seq2seq.training.export import model_state

    package_dir = export_run(trained_run / "checkpoints" / "last.ckpt", tmp_path / "pkg")
    package = load_package(package_dir)
    state = model_state(load_checkpoint_file(trained_run / "checkpoints" / "last.ckpt"))
    for key, value in package.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert package.tokenizer.vocab_size == package.model.config.vocab_size


def test_transcribe_reports_broken_files_and_keeps_the_rest(trained_run, tiny_corpus, tmp_path):
    package_dir = tmp_path / "pkg"
    run_cli("export", trained_run, package_dir, "--average", "2", check=True)
    wavs = sorted((tiny_corpus["test"].parent / "wavs" / "test").glob("*.wav"))[:3]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really audio")
    result = run_cli("transcribe", package_dir, *wavs, broken, "--beam-size", "2", "--output-format", "jsonl")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["audio_filepath"] for line in lines] == list(map(str, wavs))
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "broken.wav" in errors[0] and "Traceback" not in result.stderr


def test_evaluate_prints_wer_and_writes_per_utterance_results(trained_run, tiny_corpus, tmp_path):
    package_dir = tmp_path / "pkg"
    run_cli("export", trained_run / "checkpoints" / "last.ckpt", package_dir, check=True)
    out = tmp_path / "eval.jsonl"
    result = run_cli(
        "evaluate", package_dir, tiny_corpus["test"], "--out", out, "--beam-size", "1", "--ctc-weight", "0",
        check=True,
    )  # fmt: skip
    assert "WER" in result.stdout and "CER" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and all(r["error"] is None for r in rows)


def test_checkpoints_can_be_chosen_by_validation_loss_or_recency(trained_run):
    import re

    from seq2seq.training.export import choose_checkpoints

    recent = choose_checkpoints(trained_run, 2, "last")
    steps = [int(re.search(r"step=(\d+)", p.name).group(1)) for p in recent]
    assert len(steps) == 2 and steps == sorted(steps, reverse=True)
    best = choose_checkpoints(trained_run, 2, "best")
    losses = [float(re.search(r"val_loss=([0-9.]+?)\.ckpt", p.name).group(1)) for p in best]
    assert losses == sorted(losses)
