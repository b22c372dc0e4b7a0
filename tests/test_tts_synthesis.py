"""Synthesis from a model package and the TTS evaluation metrics (tiny untrained models)."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import soundfile
import torch
from support import assert_round_trip_cer, tiny_asr_package, tiny_tts_package

from seq2seq.core.package import PackageError
from seq2seq.core.text import CharTokenizer, PhonemeTokenizer
from seq2seq.data.manifest import Utterance, write_manifest
from seq2seq.evaluation.tts import dtw_path, evaluate_tts, mcd_and_l1, mel_cepstra
from seq2seq.inference.synthesize import Synthesizer, synthesize_texts
from seq2seq.tasks import load_model_package, load_package

N_MELS = 20


TEXTS = ["a cab", "bad cab ab"]


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return tiny_tts_package(tmp_path_factory.mktemp("tts") / "package", CharTokenizer.build(TEXTS), N_MELS)


def test_synthesize_writes_every_output(package_dir, tmp_path):
    assert load_package(package_dir).write(TEXTS, tmp_path) == 1  # random weights: no stop token, reported
    entries = [json.loads(line) for line in (tmp_path / "synthesized.jsonl").read_text().splitlines()]
    assert [e["text"] for e in entries] == TEXTS
    for entry in entries:
        stem = tmp_path / entry["name"]
        mel = np.load(stem.with_suffix(".npy"))
        assert mel.shape == (entry["frames"], N_MELS) and mel.dtype == np.float32
        tensor = torch.load(stem.with_suffix(".pt"), weights_only=True)
        assert type(tensor) is torch.Tensor and np.allclose(tensor.numpy(), mel)
        assert stem.with_suffix(".png").stat().st_size > 1000
        audio, rate = soundfile.read(stem.with_suffix(".wav"))
        assert rate == 16000 and len(audio) > 0


def test_text_outside_the_vocabulary_is_counted_and_spoken_without_it(package_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert load_package(package_dir).write(["a cab", "zebra 9", "xyz"], tmp_path) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "sentence 2 'zebra 9': 4 characters outside the model's language: 4 dropped ('z', 'e', 'r', '9')"
    ]
    errors = [r.getMessage() for r in caplog.records if "nothing left" in r.getMessage()]
    assert errors == [
        "sentence 3 'xyz': 3 characters outside the model's language: 3 dropped ('x', 'y', 'z'); "
        "nothing left to speak (skipped)"
    ]
    names = [json.loads(line)["name"] for line in (tmp_path / "synthesized.jsonl").read_text().splitlines()]
    assert names == ["0001", "0002"]


def test_phoneme_package_reads_plain_text(tmp_path, caplog):
    tokenizer = PhonemeTokenizer.build(["a cab", "bad cab ab", "nine"])
    package_dir = tiny_tts_package(tmp_path / "model" / "package", tokenizer, N_MELS)
    package = Synthesizer(load_model_package(package_dir)).package
    assert isinstance(package.tokenizer, PhonemeTokenizer)
    # "9" is spoken as "nine" by eSpeak NG: representable; /z/ and /ɹ/ of "zebra" were never seen.
    with caplog.at_level(logging.WARNING):
        assert load_package(package_dir).write(["a cab 9", "zebra"], tmp_path / "out") == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("sentence 2 'zebra': ") and "'z'" in warning and "dropped" in warning
    entries = [json.loads(line) for line in (tmp_path / "out/synthesized.jsonl").read_text().splitlines()]
    assert [e["text"] for e in entries] == ["a cab 9", "zebra"]
    assert np.load(tmp_path / "out" / f"{entries[0]['name']}.npy").shape[1] == N_MELS


def test_batched_synthesis_is_reproducible_with_a_seed(package_dir):
    package = Synthesizer(load_model_package(package_dir)).package
    first, second = (synthesize_texts(package, TEXTS, seed=5) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a.mel, b.mel)
        assert a.alignment.shape == (-(-a.mel.shape[0] // 2), len(package.tokenizer.encode(a.text)))


def test_an_asr_package_is_refused(package_dir, tmp_path):
    config = json.loads((package_dir / "config.json").read_text())
    (tmp_path / "fake").mkdir()
    for name in ("model.safetensors", "tokenizer"):
        (tmp_path / "fake" / name).symlink_to(package_dir / name)
    (tmp_path / "fake" / "config.json").write_text(json.dumps({**config, "task": "asr"}))
    with pytest.raises(PackageError):
        Synthesizer(load_model_package(tmp_path / "fake"))


def test_dtw_path_is_optimal_on_small_matrices():
    rng = np.random.default_rng(0)
    cost = rng.random((5, 4))

    def best(i, j):  # brute-force recursion
        if i == 0 and j == 0:
            return cost[0, 0]
        options = [best(a, b) for a, b in ((i - 1, j), (i, j - 1), (i - 1, j - 1)) if a >= 0 and b >= 0]
        return cost[i, j] + min(options)

    rows, cols = dtw_path(cost)
    assert rows[0] == cols[0] == 0 and rows[-1] == 4 and cols[-1] == 3
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)
    assert np.isclose(cost[rows, cols].sum(), best(4, 3))


def test_mcd_is_zero_for_identical_and_time_stretched_mels_and_grows_with_error():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(30, N_MELS))
    assert mcd_and_l1(reference, reference) == (0.0, 0.0)
    stretched = np.repeat(reference, 2, axis=0)  # same content, twice as slow
    assert mcd_and_l1(stretched, reference)[0] < 1e-9
    small, large = (
        mcd_and_l1(reference + rng.normal(scale=s, size=reference.shape), reference)[0] for s in (0.1, 1)
    )
    assert 0 < small < large
    # c0 (energy) is excluded: a constant gain changes nothing.
    assert np.allclose(mel_cepstra(reference + 3.0), mel_cepstra(reference))


def test_evaluate_tts_end_to_end_with_an_asr_package(package_dir, tmp_path):
    rate, utterances = 16000, []
    for i, text in enumerate(TEXTS):
        wave = 0.1 * np.sin(2 * np.pi * 220 * (i + 1) * np.arange(rate // 4) / rate)
        soundfile.write(tmp_path / f"{i}.wav", wave, rate)
        utterances.append(Utterance(str(tmp_path / f"{i}.wav"), 0.25, text, id=str(i)))
    manifest = write_manifest(tmp_path / "test.jsonl", utterances)
    asr = load_package(tiny_asr_package(tmp_path / "asr", texts=TEXTS))
    result = evaluate_tts(load_package(package_dir), manifest, asr, out=tmp_path / "per_sentence.jsonl")
    assert result.sentences == 2
    for value in dataclasses.astuple(result)[1:]:
        assert np.isfinite(value)
    rows = [json.loads(line) for line in (tmp_path / "per_sentence.jsonl").read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [("0", TEXTS[0]), ("1", TEXTS[1])]
    assert np.mean([r["mcd_dtw"] for r in rows]) == pytest.approx(result.mcd_dtw)
    assert sum(r["frames"] for r in rows) / sum(r["reference_frames"] for r in rows) == pytest.approx(
        result.length_ratio
    )
    assert all(set(r["heard"]) <= set("".join(TEXTS)) for r in rows)  # the recognizer's characters only
    assert_round_trip_cer(rows, asr.package.tokenizer.normalizer, result.cer_synthesized)
