"""Shared fixtures: one thread per test, and a tiny real eSpeak NG corpus (helpers live in support.py)."""

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
