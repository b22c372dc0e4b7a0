"""A Conformer ASR package transcribes every file alike alone (batch 1) and in a padded batch of 8; the
unmasked conv-norm option, which lets padding through the depthwise kernel, fails the same check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from support import ALPHABET, SAMPLE_RATE, run_cli, tiny_asr_config, tiny_stack

from seq2seq.core.config import from_dict, to_dict
from seq2seq.core.package import save_package
from seq2seq.core.text import CharTokenizer
from seq2seq.experiments import ASRExperimentConfig
from seq2seq.models.asr import ASRModel
from seq2seq.nn.conformer import ConformerConfig
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig

SECONDS = [0.35, 1.9, 0.8, 1.3, 0.5, 1.6, 1.05, 0.65]  # 8 files, all of different lengths


def tiny_conformer_package(out_dir: Path, seed: int = 1, masked: bool = True) -> Path:
    """A random-init tiny ASR package with a Conformer encoder (kernel 9, batch norm, absolute positions),
    its running statistics moved off (0, 1) and its output layers sharpened so that transcripts are long
    and follow the input (seed 1: one whose unmasked variant shows the leak in its transcripts)."""
    tokenizer = CharTokenizer.build([ALPHABET])
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    model_config = dataclasses.replace(
        tiny_asr_config(tokenizer.vocab_size),
        encoder=tiny_stack(num_layers=2, activation="swish"),
        encoder_kind="conformer",
        conformer=ConformerConfig(kernel_size=9, conv_norm=NormConfig(kind="batch"), conv_norm_masked=masked),
    )
    decoding = {"beam_size": 1, "ctc_weight": 0.0, "max_length_ratio": 0.5}
    experiment = from_dict(ASRExperimentConfig, {"model": model_config, "decoding": decoding})
    torch.manual_seed(seed)
    model = ASRModel(experiment.model).train()
    with torch.no_grad():
        for _ in range(3):
            lengths = torch.tensor([150, 90, 120])
            features = torch.randn(3, 150, 80) * 3 - 5
            model.encode(features * lengths_to_mask(lengths).unsqueeze(-1), lengths)
        model.output.weight.mul_(4.0)
        model.ctc_head.weight.mul_(20.0)
        model.ctc_head.bias.zero_()
    return save_package(out_dir, "asr", to_dict(experiment), model.state_dict(), tokenizer_dir)


def write_melody(path: Path, seconds: float, seed: int) -> Path:
    """A quiet tone whose pitch jumps every 0.1 s: features that change from frame to frame (a steady
    tone makes every encoder frame alike, and transcripts that no padding leak could change)."""
    rng = np.random.default_rng(seed)
    notes = rng.uniform(150.0, 3000.0, int(np.ceil(seconds / 0.1)))
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.1 * np.sin(2 * np.pi * np.cumsum(notes[(t / 0.1).astype(int)]) / SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave.astype(np.float32), SAMPLE_RATE)
    return path


def transcripts(package: Path, files: list[Path], *options: str) -> dict[str, str]:
    result = run_cli("transcribe", package, *files, *options, check=True)
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    return {path: text for path, text in lines}


DECODINGS = {"greedy": {}, "ctc": {"beam_size": 2, "ctc_weight": 1.0}}


def cli_options(decoding: dict) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in decoding.items()]


@pytest.mark.slow
@pytest.mark.parametrize("decoding", list(DECODINGS))
def test_batch_of_8_transcribes_as_batch_of_1(tmp_path, decoding):
    package = tiny_conformer_package(tmp_path / "pkg")
    files = [write_melody(tmp_path / "audio" / f"{i}.wav", seconds, i) for i, seconds in enumerate(SECONDS)]
    options = cli_options(DECODINGS[decoding])
    alone = transcripts(package, files, "--batch-size", "1", *options)
    batched = transcripts(package, files, "--batch-size", "8", *options)
    assert len(alone) == len(files)
    assert batched == alone
    assert sum(len(text) for text in alone.values()) > 2 * len(files), alone  # not empty transcripts


@pytest.mark.slow
@pytest.mark.parametrize("decoding", list(DECODINGS))
def test_the_unmasked_option_fails_that_check(tmp_path, decoding):
    """The same model with ``conv_norm_masked: false`` (in-process: the CLI adds nothing here)."""
    from seq2seq.tasks import load_package

    transcriber = load_package(tiny_conformer_package(tmp_path / "pkg", masked=False))
    transcriber = transcriber.with_decoding(**DECODINGS[decoding]) if DECODINGS[decoding] else transcriber
    files = [write_melody(tmp_path / "audio" / f"{i}.wav", seconds, i) for i, seconds in enumerate(SECONDS)]
    alone, batched = (transcriber.transcribe(files, batch_size=size) for size in (1, 8))
    assert alone != batched
