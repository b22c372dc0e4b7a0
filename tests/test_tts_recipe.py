"""The TTS recipe end to end from the CLI on a tiny real corpus: train (phonemes, cosine schedule), resume,
export, synthesize, evaluate with an ASR package."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import CONFIGS, assert_round_trip_cer, run_cli, tiny_asr_overrides, tiny_tts_overrides

from seq2seq.core.text import PhonemeTokenizer, load_tokenizer
from seq2seq.tasks import load_model_package
from seq2seq.training.checkpointing import load_checkpoint_file

pytestmark = pytest.mark.slow


def test_train_resume_export_synthesize_evaluate(tiny_corpus, tmp_path):
    run = tmp_path / "tts"
    config = CONFIGS / "tts" / "small.yaml"
    run_cli("train", "-c", config, *tiny_tts_overrides(tiny_corpus, run), check=True)
    assert isinstance(load_tokenizer(run / "tokenizer"), PhonemeTokenizer)
    run_cli(
        "train", "-c", config, *tiny_tts_overrides(tiny_corpus, run, **{"trainer.max_steps": 6}), check=True
    )
    checkpoint = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6 and checkpoint["seq2seq"]["task"] == "tts"
    rates = checkpoint["lr_schedulers"][0]["_last_lr"]
    assert rates[0] == pytest.approx(0.002 * 0.05)  # the cosine schedule ended on its floor: 5 % of the peak
    run_cli("export", run, run / "package", "--average", "1", check=True)
    result = run_cli("synthesize", run / "package", "the cat sat", "--out", tmp_path / "out")
    assert result.returncode == (1 if "no stop token" in result.stderr else 0), result.stderr  # 6 steps
    (entry,) = [json.loads(line) for line in (tmp_path / "out/synthesized.jsonl").read_text().splitlines()]
    assert np.load(tmp_path / "out" / f"{entry['name']}.npy").shape == (entry["frames"], 80)

    from seq2seq.experiments import load_experiment
    from seq2seq.tasks import train

    asr_run = tmp_path / "asr"
    train(load_experiment(CONFIGS / "asr" / "small.yaml", tiny_asr_overrides(tiny_corpus, asr_run)))
    run_cli("export", asr_run, asr_run / "package", "--average", "1", check=True)
    result = run_cli("evaluate", run / "package", tiny_corpus["tts_test"], "--asr-model", asr_run / "package")
    metrics = json.loads(result.stdout)
    assert result.returncode == (1 if metrics["reported"] else 0), result.stderr
    assert metrics["reported"] == result.stderr.count("error: ") + result.stderr.count("warning: ")
    assert metrics["sentences"] == len(tiny_corpus["tts_test"].read_text().splitlines())
    assert metrics["mcd_dtw"] > 0
    rows = [json.loads(line) for line in (run / "package" / "eval-tts_test.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["sentences"]
    normalize = load_model_package(asr_run / "package").tokenizer.normalizer
    assert_round_trip_cer(rows, normalize, metrics["cer_synthesized"])
