"""Helpers shared by the reliability tests: a tiny random-init ASR package and small audio files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

from seq2seq.config import to_dict
from seq2seq.experiments import ASRExperimentConfig
from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.nn.transformer import TransformerConfig
from seq2seq.package import save_package
from seq2seq.text import CharTokenizer

SAMPLE_RATE = 16000
TINY_STACK = {"num_layers": 1, "d_model": 16, "num_heads": 2, "ffn_dim": 32, "dropout": 0.0}


def tiny_asr_experiment(vocab_size: int) -> ASRExperimentConfig:
    """An ASR experiment whose model has a few thousand parameters and decodes greedily in milliseconds."""
    model = ASRModelConfig(
        vocab_size=vocab_size,
        input_dim=80,
        conv_channels=4,
        encoder=TransformerConfig(**TINY_STACK),
        decoder=TransformerConfig(**TINY_STACK),
    )
    experiment = ASRExperimentConfig(model=model)
    data = to_dict(experiment)
    data["decoding"].update(beam_size=1, ctc_weight=0.0, max_length_ratio=0.5)
    from seq2seq.config import from_dict

    return from_dict(ASRExperimentConfig, data)


def tiny_asr_package(out_dir: Path, seed: int = 0) -> Path:
    """A random-init ASR model package (safetensors + JSON config + character tokenizer)."""
    tokenizer = CharTokenizer.build(["abcdefghijklmnopqrstuvwxyz '"])
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    experiment = tiny_asr_experiment(tokenizer.vocab_size)
    torch.manual_seed(seed)
    model = ASRModel(experiment.model)
    return save_package(out_dir, "asr", to_dict(experiment), model.state_dict(), tokenizer_dir)


def write_tone(
    path: Path, seconds: float = 0.3, rate: int = SAMPLE_RATE, channels: int = 1, subtype: str | None = None
) -> Path:
    """A quiet sine tone (a valid, readable audio file)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    if channels > 1:
        wave = np.repeat(wave[:, None], channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, rate, subtype=subtype)
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m seq2seq ARGS`` in a subprocess, text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], capture_output=True, text=True, timeout=timeout
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    """Records as JSON lines; strings are written verbatim (for malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
