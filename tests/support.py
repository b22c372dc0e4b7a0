"""What the tests share: tiny models and packages, CLI runs, audio files, manifests, CER by hand.

Every test that needs a model, a package or a ``seq2seq`` subprocess builds it here, so "tiny" means one
thing: one-layer stacks of width 16 that initialise and decode in milliseconds. Fixtures stay in
``conftest.py``; this module is imported by name (``from support import ...``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from seq2seq.core.config import from_dict, to_dict
from seq2seq.core.package import save_package
from seq2seq.core.text import CharTokenizer, SymbolTokenizer, TextNormalizer, Tokenizer, TokenizerPair
from seq2seq.data.text_pairs import TextPair, TextPairDataset, collate_text_pairs
from seq2seq.experiments import (
    ASRExperimentConfig,
    LMExperimentConfig,
    Text2TextExperimentConfig,
    TTSExperimentConfig,
)
from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.models.lm import LanguageModel, LMModelConfig
from seq2seq.models.text2text import Text2TextModel
from seq2seq.models.tts import TTSModel, TTSModelConfig
from seq2seq.nn.transformer import TransformerConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SAMPLE_RATE = 16000
ALPHABET = "abcdefghijklmnopqrstuvwxyz '"

# ---------------------------------------------------------------------------------------------
# Tiny models

TINY_STACK = {"num_layers": 1, "d_model": 16, "num_heads": 2, "ffn_dim": 32, "dropout": 0.0}


def tiny_stack(**changes) -> TransformerConfig:
    """A Transformer stack of ``TINY_STACK`` with ``changes`` (e.g. ``num_layers=2``, ``norm=...``)."""
    return TransformerConfig(**{**TINY_STACK, **changes})


def tiny_asr_config(
    vocab_size: int, input_dim: int = 80, conv_channels: int = 4, **stack_changes
) -> ASRModelConfig:
    """An ASR model of a few thousand parameters; encoder and decoder are ``tiny_stack(**stack_changes)``."""
    stack = tiny_stack(**stack_changes)
    return ASRModelConfig(
        vocab_size=vocab_size, input_dim=input_dim, conv_channels=conv_channels, encoder=stack, decoder=stack
    )


def tiny_asr_experiment(vocab_size: int, **decoding) -> ASRExperimentConfig:
    """An experiment around ``tiny_asr_config`` that decodes greedily (beam 1, no CTC, ratio 0.5)."""
    decoding = {"beam_size": 1, "ctc_weight": 0.0, "max_length_ratio": 0.5, **decoding}
    return from_dict(ASRExperimentConfig, {"model": tiny_asr_config(vocab_size), "decoding": decoding})


TTS_MELS = 6  # mel bands of the tiny TTS model and batch


def tiny_tts_config(
    reduction_factor: int = 1, dropout: float = 0.0, vocab_size: int = 12, n_mels: int = TTS_MELS, **overrides
) -> TTSModelConfig:
    """A TTS model with two-layer width-16 stacks and 8-channel prenets and postnet.

    ``dropout`` sets every dropout of the model (prenets, postnet, positional, stacks).
    """
    stack = tiny_stack(num_layers=2, dropout=dropout)
    fields = dict(
        vocab_size=vocab_size,
        n_mels=n_mels,
        reduction_factor=reduction_factor,
        embedding_dim=8,
        encoder_prenet_channels=8,
        encoder_prenet_dropout=dropout,
        decoder_prenet_dim=8,
        decoder_prenet_dropout=dropout,
        postnet_channels=8,
        postnet_dropout=dropout,
        positional_dropout=dropout,
        encoder=stack,
        decoder=stack,
    )
    return TTSModelConfig(**{**fields, **overrides})


def tiny_tts_batch(seed: int = 0):
    """Three sentences whose text and mel lengths differ (mel lengths not multiples of 2 or 3):
    tokens (3, 7), token lengths [7, 4, 2], mels (3, 13, TTS_MELS), mel lengths [13, 8, 5]."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(5, 12, (3, 7), generator=g)
    token_lengths = torch.tensor([7, 4, 2])
    mels = torch.randn(3, 13, TTS_MELS, generator=g)
    mel_lengths = torch.tensor([13, 8, 5])
    return tokens, token_lengths, mels, mel_lengths


# ---------------------------------------------------------------------------------------------
# Tiny packages


def tiny_asr_package(out_dir: Path, seed: int = 0, texts: Iterable[str] = (ALPHABET,)) -> Path:
    """A random-init ``tiny_asr_experiment`` package with a character tokenizer built from ``texts``.

    The tokenizer is saved beside the package, in ``<out_dir>-tokenizer``.
    """
    tokenizer = CharTokenizer.build(list(texts))
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    experiment = tiny_asr_experiment(tokenizer.vocab_size)
    torch.manual_seed(seed)
    model = ASRModel(experiment.model)
    return save_package(out_dir, "asr", to_dict(experiment), model.state_dict(), tokenizer_dir)


def tiny_tts_package(out_dir: Path, tokenizer: Tokenizer, n_mels: int = 20, seed: int = 0) -> Path:
    """A random-init TTS package: one-layer ``tiny_tts_config`` with r = 2 and a short maximum length.

    Its prenet dropout (0.5) stays on at inference, as in real packages, so synthesis is random unless
    seeded. The tokenizer is saved beside the package, in ``<out_dir>-tokenizer``.
    """
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    model = tiny_tts_config(
        2, 0.5, tokenizer.vocab_size, n_mels, encoder=tiny_stack(), decoder=tiny_stack(), alignment_heads=(0,)
    )
    experiment = from_dict(
        TTSExperimentConfig,
        {
            "data": {"features": {"n_mels": n_mels}},
            "model": model,
            "inference": {"max_length_ratio": 3.0, "stop_threshold": 0.99, "griffin_lim_iterations": 2},
        },
    )
    torch.manual_seed(seed)
    weights = TTSModel(experiment.model).state_dict()
    return save_package(out_dir, "tts", to_dict(experiment), weights, tokenizer_dir)


def tiny_lm_package(out_dir: Path, seed: int = 0, texts: Iterable[str] = (ALPHABET,)) -> Path:
    """A random-init two-layer ``tiny_stack`` LM package with a character tokenizer built from ``texts``
    (saved beside the package, in ``<out_dir>-tokenizer``)."""
    tokenizer = CharTokenizer.build(list(texts))
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    model = LMModelConfig(vocab_size=tokenizer.vocab_size, decoder=tiny_stack(num_layers=2))
    experiment = from_dict(LMExperimentConfig, {"model": model})
    torch.manual_seed(seed)
    return save_package(out_dir, "lm", to_dict(experiment), LanguageModel(model).state_dict(), tokenizer_dir)


# A few words and their ARPAbet pronunciations (without stress), for G2P tests.
TINY_LEXICON = {
    "cat": ["K AE T"],
    "dog": ["D AO G"],
    "tomato": ["T AH M EY T OW", "T AH M AA T OW"],
    "either": ["IY DH ER", "AY DH ER"],
    "bed": ["B EH D"],
    "mat": ["M AE T"],
    "god": ["G AA D"],
    "ox": ["AA K S"],
}


def tiny_pair_tokenizer(lexicon: dict[str, list[str]] = TINY_LEXICON) -> TokenizerPair:
    """Letters of the words in, their phonemes out (the recipe's normalisers)."""
    experiment = Text2TextExperimentConfig()
    source = CharTokenizer.build(list(lexicon), TextNormalizer(experiment.source_text))
    targets = [p for prons in lexicon.values() for p in prons]
    return TokenizerPair(source, SymbolTokenizer.build(targets, TextNormalizer(experiment.target_text)))


TINY_TEXT_CONFORMER = {"encoder_kind": "conformer", "conformer": {"kernel_size": 3}}


def tiny_text2text_experiment(
    tokenizer: TokenizerPair, train_ctc_weight: float = 0.0, model_changes: dict | None = None, **decoding
) -> Text2TextExperimentConfig:
    """A one-layer text2text experiment sized for ``tokenizer``; greedy unless ``decoding`` says otherwise.

    ``model_changes`` overrides model fields (``TINY_TEXT_CONFORMER``: a Conformer encoder).
    """
    decoding = {"beam_size": 1, "ctc_weight": 0.0, "max_length_ratio": 3.0, **decoding}
    model = {"encoder": tiny_stack(d_model=32, ffn_dim=64), "decoder": tiny_stack(d_model=32, ffn_dim=64),
             **tokenizer.model_sizes(), **(model_changes or {})}  # fmt: skip
    return from_dict(
        Text2TextExperimentConfig, {"model": model, "decoding": decoding, "ctc_weight": train_ctc_weight}
    )


def tiny_g2p_package(
    out_dir: Path,
    state: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    model_changes: dict | None = None,
    **decoding,
) -> Path:
    """A text2text package over ``TINY_LEXICON`` (random init unless ``state`` is given).

    The tokenizers are saved beside the package, in ``<out_dir>-tokenizer``.
    """
    tokenizer = tiny_pair_tokenizer()
    tokenizer_dir = out_dir.parent / f"{out_dir.name}-tokenizer"
    tokenizer.save(tokenizer_dir)
    experiment = tiny_text2text_experiment(tokenizer, model_changes=model_changes, **decoding)
    torch.manual_seed(seed)
    state = state if state is not None else Text2TextModel(experiment.model).state_dict()
    return save_package(out_dir, "text2text", to_dict(experiment), state, tokenizer_dir)


def overfit_tiny_lexicon(steps: int = 200, model_changes: dict | None = None) -> dict[str, torch.Tensor]:
    """Train the tiny model on TINY_LEXICON (every reference) until it knows it by heart."""
    from seq2seq.training.text2text_module import Text2TextTask

    tokenizer = tiny_pair_tokenizer()
    experiment = tiny_text2text_experiment(tokenizer, model_changes=model_changes)
    torch.manual_seed(0)
    task = Text2TextTask(experiment, tokenizer, "unused")
    pairs = [TextPair(w, w, tuple(p)) for w, p in TINY_LEXICON.items()]
    dataset = TextPairDataset(pairs, tokenizer, all_references=True)
    batch = collate_text_pairs([dataset[i] for i in range(len(dataset))])
    optimizer = torch.optim.Adam(task.model.parameters(), lr=3e-3)
    task.train()
    for _ in range(steps):
        optimizer.zero_grad()
        task.losses(batch)["loss"].backward()
        optimizer.step()
    return task.model.state_dict()


# ---------------------------------------------------------------------------------------------
# Tiny training runs (overrides of the shipped small configs) over the `tiny_corpus` fixture

TINY_MAX_FRAMES = 4000  # padded frames per ASR training batch


def _as_overrides(values: dict) -> list[str]:
    return [f"--{key}={value}" for key, value in values.items()]


def tiny_asr_overrides(corpus: dict[str, Path], out_dir: Path, **extra) -> list[str]:
    """Overrides that shrink configs/asr/small.yaml to a model that trains in seconds (6 steps)."""
    values = {
        "out_dir": out_dir,
        "data.train_manifest": corpus["train"],
        "data.dev_manifest": corpus["dev"],
        "data.test_manifest": corpus["test"],
        "data.cache_dir": "null",
        "data.max_frames": TINY_MAX_FRAMES,
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
    return _as_overrides({**values, **extra})


def tiny_tts_overrides(corpus: dict[str, Path], out_dir: Path, **extra) -> list[str]:
    """configs/tts/small.yaml (phonemes, cosine schedule) shrunk to seconds of training (4 steps)."""
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
    return _as_overrides({**values, **extra})


def tiny_lm_overrides(train: Path, dev: Path, out_dir: Path, **extra) -> list[str]:
    """configs/lm/small.yaml shrunk to a one-layer width-32 LM that trains in seconds (6 steps)."""
    values = {
        "out_dir": out_dir,
        "data.train_manifest": train,
        "data.dev_manifest": dev,
        "data.max_tokens": 400,
        "model.decoder.num_layers": 1,
        "model.decoder.d_model": 32,
        "model.decoder.ffn_dim": 64,
        "model.decoder.dropout": 0.0,
        "optim.warmup_steps": 2,
        "optim.decay_steps": 6,
        "trainer.max_steps": 6,
        "trainer.val_every_steps": 3,
        "trainer.checkpoint_every_steps": 2,
        "trainer.log_every_steps": 1,
    }
    return _as_overrides({**values, **extra})


def batches_per_epoch(manifest: Path, max_frames: int = TINY_MAX_FRAMES) -> int:
    """Training batches in one epoch over ``manifest`` (one rank, the default data seed)."""
    from seq2seq.core.audio import FeatureConfig
    from seq2seq.data.datasets import frames_from_duration
    from seq2seq.data.manifest import read_manifest
    from seq2seq.data.sampler import BucketBatchSampler

    utterances, _ = read_manifest(manifest)
    frames = [frames_from_duration(u.duration, FeatureConfig()) for u in utterances]
    return len(BucketBatchSampler(frames, max_frames, True, 0, 1, 0))


# ---------------------------------------------------------------------------------------------
# The command line


def cli_command(*args) -> list[str]:
    """``python -m seq2seq ARGS`` as an argument list (arguments may be paths)."""
    return [sys.executable, "-m", "seq2seq", *map(str, args)]


def run_cli(*args, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """``seq2seq ARGS`` in a subprocess, output captured as text; ``check``: fail unless it exits 0."""
    result = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout)
    if check:
        command = " ".join(map(str, args))
        assert result.returncode == 0, f"seq2seq {command} failed:\n{result.stderr[-3000:]}"
    return result


def run_main(capsys, *args, check: bool = False) -> subprocess.CompletedProcess:
    """``seq2seq ARGS`` in this process (no interpreter start-up: fast), captured like :func:`run_cli`;
    ``check``: fail unless it exits 0."""
    from seq2seq import cli

    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    captured = capsys.readouterr()
    assert not check or code == 0, f"seq2seq {' '.join(map(str, args))} failed:\n{captured.err[-3000:]}"
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command exited 2 with exactly one ``error:`` line containing every word, and no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Audio files and manifests


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


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    """Records as JSON lines; strings are written verbatim (for malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Error rates recomputed by hand (not by torchmetrics, which the code under test uses)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance with unit costs (one row of the dynamic programme at a time)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def assert_round_trip_cer(rows: list[dict], normalize: Callable[[str], str], cer: float) -> None:
    """Per-sentence rows (``text``, ``heard``, ``cer``) agree with ``cer``, the corpus CER of what an ASR
    heard: each row's CER is edit distance / length of the normalized text, and the corpus CER pools
    them, so it lies in ``[0, sum max(|heard|, |text|) / sum |text|]`` (no edit distance exceeds the
    longer string)."""
    distances = lengths = longest = 0
    for row in rows:
        truth = normalize(row["text"])
        distance = edit_distance(row["heard"], truth)
        assert row["cer"] == pytest.approx(distance / len(truth)), row
        distances, lengths = distances + distance, lengths + len(truth)
        longest += max(len(row["heard"]), len(truth))
    assert math.isfinite(cer) and 0 <= cer <= longest / lengths, cer
    assert cer == pytest.approx(distances / lengths)
