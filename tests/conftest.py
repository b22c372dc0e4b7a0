"""Shared fixtures: a tiny real eSpeak NG corpus and a tiny ASR experiment over it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny models: one thread is fastest, and spares a shared CPU from thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict[str, Path]:
    """About 60 synthesized utterances (ASR splits plus a single-voice TTS set); seconds to build."""
    from seq2seq.data.synthetic.corpus import prepare_synthetic

    out = tmp_path_factory.mktemp("corpus")
    return prepare_synthetic(out, seed=1, num_train=48, num_dev=8, num_test=8, num_tts=24, num_workers=1)


def tiny_asr_overrides(corpus: dict[str, Path], out_dir: Path, **extra) -> list[str]:
    """Overrides that shrink configs/asr/small.yaml to a model that trains in seconds."""
    values = {
        "out_dir": out_dir,
        "data.train_manifest": corpus["train"],
        "data.dev_manifest": corpus["dev"],
        "data.test_manifest": corpus["test"],
        "data.cache_dir": "null",
        "data.max_frames": 4000,
        "model.conv_channels": 8,
        "model.encoder.num_layers": 1,
        "model.encoder.d_model": 32,
        "model.encoder.ffn_dim": 64,
        "model.decoder.num_layers": 1,
        "model.decoder.d_model": 32,
        "model.decoder.ffn_dim": 64,
        "trainer.max_steps": 6,
        "trainer.val_every_steps": 3,
        "trainer.checkpoint_every_steps": 2,
        "trainer.max_minutes": "null",
        "trainer.log_every_steps": 1,
        "optim.warmup_steps": 2,
        "decoding.beam_size": 2,
    }
    values.update(extra)
    return [f"--{key}={value}" for key, value in values.items()]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
