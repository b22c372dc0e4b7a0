"""eSpeak NG synthesis, the sentence generator and a small synthetic corpus (determinism, unseen voices)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seq2seq.core.espeak import ESPEAK_SAMPLE_RATE, EspeakError, Voice, phonemize, synthesize
from seq2seq.data.manifest import read_manifest
from seq2seq.data.synthetic import corpus
from seq2seq.data.synthetic.corpus import TEST_VARIANTS, TRAIN_VARIANTS, prepare_synthetic
from seq2seq.data.synthetic.sentences import generate_sentences, number_words, vocabulary, year_words


def test_espeak_speaks_with_plausible_duration():
    text = "turn on the kitchen lights at seven thirty"
    wave = synthesize(text, Voice("en-us", "m3", rate=175))
    seconds = wave.shape[0] / ESPEAK_SAMPLE_RATE
    assert wave.dtype == np.float32 and 1.5 < seconds < 4.0  # eight words at 175 words per minute
    assert np.sqrt(np.mean(wave**2)) > 0.02 and np.abs(wave).max() <= 1.0
    slow = synthesize(text, Voice("en-us", "m3", rate=100))
    assert slow.shape[0] > 1.4 * wave.shape[0]


def test_espeak_voices_differ_and_bad_voice_is_an_error():
    a = synthesize("hello there", Voice("en-us", "m3"))
    b = synthesize("hello there", Voice("en-gb-scotland", "f2", pitch=80))
    assert a.shape != b.shape or not np.allclose(a, b)
    with pytest.raises(EspeakError, match="no voice"):
        synthesize("hello", Voice("xx-nowhere"))
    with pytest.raises(ValueError, match="rate"):
        Voice(rate=10)


def test_phonemize_gives_ipa():
    phonemes = phonemize("hello world", "en-us")
    assert "h" in phonemes and "w" in phonemes and "ˈ" in phonemes and phonemes.count(" ") == 1


def test_sentences_are_normalised_deterministic_and_varied():
    sentences = generate_sentences(500, seed=3)
    assert sentences == generate_sentences(500, seed=3) and sentences != generate_sentences(500, seed=4)
    for sentence in sentences:
        assert sentence == sentence.lower() and not any(c.isdigit() for c in sentence)
        assert all(c.isalpha() or c in " '" for c in sentence) and 3 <= len(sentence.split()) <= 14
    assert len(vocabulary()) >= 500
    assert number_words(412) == "four hundred and twelve" and year_words(1984) == "nineteen eighty four"


def test_small_corpus_is_deterministic_with_unseen_test_voices(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_SIZE", 8)  # several blocks, scheduled differently by 1 and 2 workers
    kwargs = dict(seed=7, num_train=24, num_dev=4, num_test=6, num_tts=6)
    first = prepare_synthetic(tmp_path / "a", num_workers=2, **kwargs)
    second = prepare_synthetic(tmp_path / "b", num_workers=1, **kwargs)
    for split in ("train", "dev", "test", "tts_train", "tts_dev", "tts_test"):
        assert first[split].read_text() == second[split].read_text()  # same seed, same corpus
    utterances = {split: read_manifest(first[split])[0] for split in ("train", "dev", "test", "tts_train")}
    assert [len(u) for u in utterances.values()] == [24, 4, 6, 4]
    variant = {split: {u.speaker.partition("+")[2] for u in us} for split, us in utterances.items()}
    assert variant["test"] <= set(TEST_VARIANTS) and not variant["test"] & variant["train"]
    assert not variant["dev"] & variant["train"] and variant["train"] <= set(TRAIN_VARIANTS)
    assert {u.speaker for u in utterances["tts_train"]} == {"en-us"}
    texts = [u.text for us in utterances.values() for u in us]
    assert len(set(texts)) == len(texts)  # no sentence shared between splits
    durations = [u.duration for us in utterances.values() for u in us]
    assert min(durations) > 0.7 and max(durations) < 6.0
    info = json.loads(first["corpus"].read_text())
    assert info["splits"]["test"]["utterances"] == 6 and info["settings"]["sample_rate"] == 16000
    assert prepare_synthetic(tmp_path / "a", num_workers=2, **kwargs) == first  # reused, not rebuilt
