"""eSpeak NG synthesis, the sentence generator and a small synthetic corpus (determinism, unseen voices)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seq2seq.core.espeak import ESPEAK_SAMPLE_RATE, EspeakError, Voice, phonemize, synthesize
from seq2seq.data.manifest import read_manifest
from seq2seq.data.synthetic import corpus, grammar
from seq2seq.data.synthetic.corpus import prepare_synthetic, split_variants, voice_variants
from seq2seq.data.synthetic.lexicon import is_held_out, lexicon, ranked_words
from seq2seq.data.synthetic.numbers import digit_string, number_words, year_words
from seq2seq.data.synthetic.sentences import generate_sentences, oov_rate, template_words, vocabulary


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
    sentences = generate_sentences(2000, seed=3)
    assert sentences == generate_sentences(2000, seed=3) and sentences != generate_sentences(2000, seed=4)
    for sentence in sentences:
        assert sentence == sentence.lower() and not any(c.isdigit() for c in sentence)
        assert all(c.isalpha() or c in " '" for c in sentence) and 1 <= len(sentence.split()) <= 20
    assert len(vocabulary(sentences)) >= 2000  # 2,000 sentences already use thousands of distinct words
    assert number_words(412) == "four hundred and twelve" and year_words(1984) == "nineteen eighty four"
    import random

    digit_words = "zero oh one two three four five six seven eight nine double".split()
    assert set(digit_string(12, random.Random(0)).split()) <= set(digit_words)


def test_the_vocabulary_is_open_and_held_out_words_never_reach_training_text():
    assert len(ranked_words()) >= 20000
    reserved = template_words()
    train, held_out = lexicon(held_out=False, reserved=reserved), lexicon(held_out=True, reserved=reserved)
    assert train.size >= 20000 and 2000 <= held_out.size <= train.size / 5
    training_words = vocabulary(generate_sentences(3000, seed=1))
    drawn = {w for pool in held_out.pools.values() for w in pool.words}
    assert not training_words & drawn  # no held-out word in training text
    open_test = generate_sentences(500, seed=2, train_patterns=False, domains=("open",), held_out_share=0.3)
    same_side = oov_rate(generate_sentences(500, seed=5), training_words)  # rare training words only
    assert 0.1 + same_side < oov_rate(open_test, training_words) < 0.6


def test_training_text_uses_only_training_patterns(monkeypatch):
    held_out = grammar.families(train=False)
    assert {f.domain for f in held_out} == set(grammar.DOMAINS)  # every domain has held-out phrasings
    calls = []
    patched = tuple(
        f if f.train else grammar.Family(f.name, f.domain, f.train, lambda r, s: calls.append(1) or "x")
        for f in grammar.FAMILIES
    )
    monkeypatch.setattr(grammar, "FAMILIES", patched)
    generate_sentences(3000, seed=0)
    assert calls == []
    generate_sentences(50, seed=0, train_patterns=False)
    assert len(calls) == 50


def test_every_espeak_voice_variant_is_used_and_a_sixth_is_held_out():
    variants = voice_variants()
    splits = split_variants()
    assert len(variants) > 100 and set(splits["train"]) | set(splits["dev"]) | set(splits["test"]) == set(
        variants
    )
    assert not set(splits["train"]) & (set(splits["dev"]) | set(splits["test"]))
    assert not set(splits["dev"]) & set(splits["test"]) and {"m6", "m8", "f4"} <= set(
        splits["dev"] + splits["test"]
    )
    assert 0.1 < (len(splits["dev"]) + len(splits["test"])) / len(variants) < 0.3
    assert not any(is_held_out(w, template_words()) for w in ("the", "and", "seven", "kitchen", "alarm"))


def test_small_corpus_is_deterministic_with_unseen_test_voices(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_SIZE", 8)  # several blocks, scheduled differently by 1 and 2 workers
    kwargs = dict(seed=7, num_train=24, num_dev=4, num_test=6, num_tts=6)
    first = prepare_synthetic(tmp_path / "a", num_workers=2, **kwargs)
    second = prepare_synthetic(tmp_path / "b", num_workers=1, **kwargs)
    splits = ("train", "dev", "test", "test_patterns", "test_open", "tts_train", "tts_dev", "tts_test")
    for split in splits:
        assert first[split].read_text() == second[split].read_text()  # same seed, same corpus
    utterances = {split: read_manifest(first[split])[0] for split in splits}
    assert [len(u) for u in utterances.values()] == [24, 4, 6, 6, 6, 4, 1, 1]
    variant = {split: {u.speaker.partition("+")[2] for u in us} for split, us in utterances.items()}
    held_out = split_variants()
    for split in ("test", "test_patterns", "test_open"):
        assert variant[split] <= set(held_out["test"]) and not variant[split] & variant["train"]
    assert not variant["dev"] & variant["train"] and variant["train"] <= set(held_out["train"])
    assert {u.speaker for u in utterances["tts_train"]} == {"en-us"}
    texts = [u.text for us in utterances.values() for u in us]
    assert len(set(texts)) == len(texts)  # no sentence shared between splits
    durations = [u.duration for us in utterances.values() for u in us]
    assert min(durations) > 0.7 and max(durations) < 6.0
    info = json.loads(first["corpus"].read_text())
    assert info["splits"]["test"]["utterances"] == 6 and info["settings"]["sample_rate"] == 16000
    assert info["splits"]["train"]["oov_rate"] == 0.0 and info["splits"]["test_open"]["oov_rate"] > 0
    assert prepare_synthetic(tmp_path / "a", num_workers=2, **kwargs) == first  # reused, not rebuilt
