"""Normalisation, reserved ids, unknown characters and save/load for every tokenizer kind."""

from __future__ import annotations

import json

import pytest

from seq2seq.core.text import (
    BLANK_ID,
    EOS_ID,
    NUM_RESERVED,
    PAD_ID,
    SOS_ID,
    UNK_ID,
    CharTokenizer,
    PhonemeTokenizer,
    SentencePieceTokenizer,
    TextNormalizer,
    TextNormalizerConfig,
    load_tokenizer,
    train_tokenizer,
)

TEXTS = [
    "Turn on the kitchen lights, please!",
    "Set a timer for ten minutes.",
    "Don't forget the milk and bread",
    "What will the weather be like on Monday?",
    "Play some jazz music in the living room",
    "The meeting is on Friday at seven thirty",
] * 10


def test_reserved_ids():
    assert (BLANK_ID, PAD_ID, SOS_ID, EOS_ID, UNK_ID, NUM_RESERVED) == (0, 1, 2, 3, 4, 5)


def test_normalizer_options():
    text = "  Ｈello,   “World” — don’t STOP...  'quoted' "
    assert TextNormalizer()(text) == "hello world don't stop quoted"
    keep_case = TextNormalizer(TextNormalizerConfig(lowercase=False, strip_punctuation=False))
    assert keep_case(text) == "Hello, “World” — don't STOP... 'quoted'".replace("don't", "don’t")
    with pytest.raises(ValueError, match="lowercase"):
        TextNormalizerConfig(lowercase="yes")


def test_char_tokenizer_roundtrip_and_unknowns():
    tok = CharTokenizer.build(TEXTS)
    assert "▁" in tok.symbols and tok.vocab_size == NUM_RESERVED + len(tok.symbols)
    ids = tok.encode("Turn ON the lights")
    assert min(ids) >= NUM_RESERVED and tok.decode(ids) == "turn on the lights"
    assert tok.decode([SOS_ID, *ids, EOS_ID, PAD_ID, BLANK_ID]) == "turn on the lights"
    assert tok.unknown_characters("quick fox, quiet ox") == {"q": 2, "x": 2}
    encoded = tok.encode("qoo")
    assert encoded[0] == UNK_ID and len(encoded) == 3
    assert tok.unknown_counts == {"q": 1}


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_reserved_ids_hold(model_type, tmp_path):
    tok = SentencePieceTokenizer.train(TEXTS, model_type, vocab_size=60)
    assert tok.vocab_size <= 60
    ids = tok.encode("turn on the kitchen lights")
    assert min(ids) >= NUM_RESERVED and max(ids) < tok.vocab_size
    assert tok.decode(ids) == "turn on the kitchen lights"
    unknown = tok.encode("qqq lights")
    assert UNK_ID in unknown and tok.unknown_counts == {"q": 3}
    assert tok.decode(unknown) == "lights"
    tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer.model"]
    again = load_tokenizer(tmp_path)
    assert isinstance(again, SentencePieceTokenizer)
    assert again.encode("set a timer") == tok.encode("set a timer")


def test_char_save_load_is_json_only(tmp_path):
    tok = CharTokenizer.build(TEXTS, TextNormalizer(TextNormalizerConfig(lowercase=False)))
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config["kind"] == "char" and config["normalizer"]["lowercase"] is False
    again = load_tokenizer(tmp_path)
    assert again.encode("Set a timer") == tok.encode("Set a timer") and again.vocab_size == tok.vocab_size


def test_phoneme_tokenizer_reads_espeak_pronunciation(tmp_path):
    tok = PhonemeTokenizer.build(TEXTS)
    assert tok.phonemes("The meeting!") == "ðə mˈiːɾɪŋ"  # normalised, then eSpeak NG's en-us IPA
    ids = tok.encode("the meeting")
    assert len(ids) == len("ðə▁mˈiːɾɪŋ") and min(ids) >= NUM_RESERVED
    assert tok.decode(ids) == "ðə mˈiːɾɪŋ"
    # Spelling differs, pronunciation is the same: the ids are the same.
    assert tok.encode("knight") == tok.encode("night")
    # Only IPA symbols unseen in training are unknown, and they are counted.
    assert tok.unknown_characters("hello") == {"h": 1}  # no /h/ in TEXTS
    assert tok.encode("hello").count(UNK_ID) == 1 and tok.unknown_counts["h"] == 1
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, PhonemeTokenizer) and again.language == "en-us"
    assert again.encode("set a timer") == tok.encode("set a timer")


@pytest.mark.parametrize(
    ("kind", "cls"), [("char", CharTokenizer), ("phoneme", PhonemeTokenizer), ("bpe", SentencePieceTokenizer)]
)
def test_train_tokenizer_from_texts(tmp_path, kind, cls):
    tok = train_tokenizer(TEXTS, tmp_path / "tok", kind=kind, vocab_size=50)
    assert isinstance(tok, cls)
    assert isinstance(load_tokenizer(tmp_path / "tok"), cls)
    if kind != "phoneme":
        assert tok.decode(tok.encode("Set a timer!")) == "set a timer"
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(TEXTS, tmp_path / "x", kind="words")
