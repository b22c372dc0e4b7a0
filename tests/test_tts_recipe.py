"""The TTS recipe end to end from the CLI on a tiny real corpus: train (phonemes, cosine schedule), resume,
export, synthesize, evaluate with an ASR package."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONFIGS, tiny_asr_overrides

from seq2seq.text import PhonemeTokenizer, load_tokenizer
from seq2seq.training.checkpointing import load_checkpoint_file

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"seq2seq {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}"
    return result


def tiny_tts_overrides(corpus, out_dir, **extra) -> list[str]:
    """configs/tts/small.yaml (phonemes, cosine schedule) shrunk to seconds of training."""
    values = {
        "out_dir": out_dir,
        "data.train_manifest": corpus["tts_train"],
        "data.dev_manifest": corpus["tts_dev"],
        "data.test_manifest": corpus["tts_test"],
        "data.cache_dir": "null",
        "model.embedding_dim": 16,
        "model.encoder_prenet_channels": 16,
        "model.decoder_prenet_dim": 16,
        "model.postnet_channels": 8,
        "model.encoder.d_model": 16,
        "model.decoder.d_model": 16,
        "model.encoder.ffn_dim": 32,
        "model.decoder.ffn_dim": 32,
        "model.encoder.num_layers": 1,
        "model.decoder.num_layers": 2,
        "optim.warmup_steps": 2,
        "optim.decay_steps": 6,
        "trainer.max_steps": 4,
        "trainer.max_minutes": "null",
        "trainer.val_every_steps": 2,
        "trainer.checkpoint_every_steps": 2,
        "trainer.log_every_steps": 1,
        "inference.max_length_ratio": 2.0,
        "inference.griffin_lim_iterations": 2,
    }
    values.update(extra)
    return [f"--{key}={value}" for key, value in values.items()]


def test_train_resume_export_synthesize_evaluate(tiny_corpus, tmp_path):
    run = tmp_path / "tts"
    config = CONFIGS / "tts" / "small.yaml"
    run_cli("train", "-c", config, *tiny_tts_overrides(tiny_corpus, run))
    assert isinstance(load_tokenizer(run / "tokenizer"), PhonemeTokenizer)
    run_cli("train", "-c", config, *tiny_tts_overrides(tiny_corpus, run, **{"trainer.max_steps": 6}))
    checkpoint = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6 and checkpoint["seq2seq"]["task"] == "tts"
    rates = checkpoint["lr_schedulers"][0]["_last_lr"]
    assert rates[0] == pytest.approx(0.002 * 0.05)  # the cosine schedule ended on its floor: 5 % of the peak
    run_cli("export", run, run / "package", "--average", "1")
    run_cli("synthesize", run / "package", "the cat sat", "--out", tmp_path / "out")
    (entry,) = [json.loads(line) for line in (tmp_path / "out/synthesized.jsonl").read_text().splitlines()]
    assert np.load(tmp_path / "out" / f"{entry['name']}.npy").shape == (entry["frames"], 80)

    from seq2seq.config import load_experiment
    from seq2seq.training.run import train

    asr_run = tmp_path / "asr"
    train(load_experiment(CONFIGS / "asr" / "small.yaml", tiny_asr_overrides(tiny_corpus, asr_run)))
    run_cli("export", asr_run, asr_run / "package", "--average", "1")
    result = run_cli("evaluate", run / "package", tiny_corpus["tts_test"], "--asr-model", asr_run / "package")
    metrics = json.loads(result.stdout)
    assert metrics["sentences"] == len(tiny_corpus["tts_test"].read_text().splitlines())
    assert metrics["cer_synthesized"] >= 0 and metrics["mcd_dtw"] > 0
    rows = (run / "package" / "eval-tts_test.jsonl").read_text().splitlines()
    assert len(rows) == metrics["sentences"] and "heard" in json.loads(rows[0])
