"""A TTS text front-end whose phonemes come from a G2P package (``tokenizer.kind: g2p``): the lexicon it
builds, new words pronounced by the model it carries, unspellable characters reported, save and load,
config errors, and a TTS run trained, exported and loaded with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import (
    TINY_LEXICON,
    assert_one_line_error,
    overfit_tiny_lexicon,
    run_main,
    tiny_asr_package,
    tiny_g2p_package,
    tiny_tts_overrides,
    write_jsonl,
)

from seq2seq.core.config import ConfigError
from seq2seq.core.package import PackageError
from seq2seq.core.text import (
    G2P_DIR,
    LEXICON_FILE,
    NUM_RESERVED,
    SPACE,
    PronunciationTokenizer,
    TextNormalizer,
    load_tokenizer,
    train_tokenizer,
)
from seq2seq.data.text_pairs import read_pronunciations
from seq2seq.experiments import TokenizerConfig, load_experiment
from seq2seq.inference.pronounce import load_pronouncer
from seq2seq.tasks import load_model_package, load_package


class FakePronouncer:
    """Each letter is its own upper-case phoneme; records which words it was asked for."""

    letters = frozenset("abcdefghijklmnopqrstuvwxyz'")
    directory = None

    def __init__(self):
        self.asked: list[list[str]] = []

    def __call__(self, words):
        self.asked.append(list(words))
        return [tuple(c.upper() for c in word if c != "'") for word in words]


def test_the_lexicon_holds_every_word_and_new_words_are_pronounced_once(tmp_path):
    pronounce = FakePronouncer()
    tokenizer = train_tokenizer(["The cat sat.", "a cat"], tmp_path / "tok", kind="g2p", pronounce=pronounce)
    assert isinstance(tokenizer, PronunciationTokenizer)
    assert pronounce.asked == [["a", "cat", "sat", "the"]]  # each distinct word once, at build time
    assert tokenizer.symbols == ["A", "C", "E", "H", "S", "T", SPACE]
    ids = {s: NUM_RESERVED + i for i, s in enumerate(tokenizer.symbols)}
    assert tokenizer.pronunciations("a CAT!") == f"A {SPACE} C A T"
    assert tokenizer.encode("a CAT!") == [ids["A"], ids[SPACE], ids["C"], ids["A"], ids["T"]]
    assert tokenizer.decode(tokenizer.encode("the cat")) == f"T H E {SPACE} C A T"
    tokenizer.encode("the hat")
    tokenizer.encode("hat hat")
    assert pronounce.asked[1:] == [["hat"]]  # a new word is pronounced once, then remembered
    assert tokenizer.lexicon["hat"] == ("H", "A", "T")


def test_characters_the_g2p_model_cannot_spell_are_dropped_and_reported():
    pronounce = FakePronouncer()
    tokenizer = PronunciationTokenizer.build(["cat nave"], pronounce, TextNormalizer())
    assert tokenizer.pronunciations("ca7t naïve 42") == f"C A T {SPACE} N A V E"
    assert tokenizer.unknown_characters("ca7t naïve 42") == {"7": 1, "ï": 1, "4": 1, "2": 1}
    unseen = tokenizer.unknown_characters("dog")  # phonemes the vocabulary was not built with
    assert unseen == {"D": 1, "O": 1, "G": 1}
    assert tokenizer.outside_language("ca7t").dropped == {"7": 1}


def test_save_and_load_keep_the_lexicon_and_a_loaded_tokenizer_needs_its_model_for_new_words(tmp_path):
    built = train_tokenizer(["the cat", "don't"], tmp_path / "tok", kind="g2p", pronounce=FakePronouncer())
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, PronunciationTokenizer)
    assert (loaded.symbols, loaded.lexicon, loaded.letters) == (built.symbols, built.lexicon, built.letters)
    assert loaded.encode("don't the cat") == built.encode("don't the cat")
    assert loaded.g2p_dir is None  # the fake model has no package to copy
    with pytest.raises(ValueError, match="'dog' is not in the tokenizer's lexicon and no G2P model is bound"):
        loaded.encode("the dog")
    (tmp_path / "tok" / LEXICON_FILE).write_text("cat\tK AE T\nbroken line\n")
    with pytest.raises(ValueError, match=r"lexicon.tsv:2: expected 'word<TAB>phonemes'"):
        load_tokenizer(tmp_path / "tok")


def test_dictionary_words_are_looked_up_and_only_the_others_go_to_the_model(tmp_path):
    cmudict_like = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"id": "cat", "text": "cat", "target": "K AE T", "references": ["K AE T"]},
            {"id": "the", "text": "the", "target": "DH AH", "references": ["DH AH", "DH IY"]},
        ],
    )
    later = write_jsonl(
        tmp_path / "dev.jsonl", [{"id": "the", "text": "the", "target": "TH E", "references": []}]
    )
    dictionary = read_pronunciations([cmudict_like, later])
    assert dictionary == {"cat": ("K", "AE", "T"), "the": ("DH", "AH")}  # first pronunciation, first manifest
    pronounce = FakePronouncer()
    tokenizer = train_tokenizer(
        ["the cat sat"], tmp_path / "tok", kind="g2p", pronounce=pronounce, dictionary=dictionary
    )
    assert pronounce.asked == [["sat"]]
    assert tokenizer.pronunciations("the cat sat") == f"DH AH {SPACE} K AE T {SPACE} S A T"
    assert load_tokenizer(tmp_path / "tok").lexicon == {**dictionary, "sat": ("S", "A", "T")}
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"id": "x", "text": "x", "target": "X"}, "{not json"])
    with pytest.raises(ConfigError, match=r"broken.jsonl:2: "):
        read_pronunciations([broken])
    with pytest.raises(ConfigError, match=r"missing.jsonl: pronunciation manifest not found"):
        read_pronunciations([tmp_path / "missing.jsonl"])


def test_the_config_pairs_kind_g2p_with_a_g2p_package():
    with pytest.raises(ValueError, match="tokenizer.kind=g2p needs tokenizer.g2p"):
        TokenizerConfig(kind="g2p")
    with pytest.raises(
        ValueError, match="tokenizer.g2p names a G2P package for tokenizer.kind=g2p, not phoneme"
    ):
        TokenizerConfig(kind="phoneme", g2p="runs/g2p/package")
    with pytest.raises(ValueError, match="tokenizer.dictionary is looked up before a G2P model"):
        TokenizerConfig(kind="g2p", source="runs/tts/package", dictionary=("data/cmudict/train.jsonl",))
    with pytest.raises(ValueError, match="a g2p tokenizer needs a G2P model package"):
        train_tokenizer(["cat"], "unused", kind="g2p")


@pytest.fixture(scope="module")
def g2p_package(tmp_path_factory) -> Path:
    """The tiny G2P model trained to know TINY_LEXICON by heart, as a package."""
    return tiny_g2p_package(tmp_path_factory.mktemp("g2p") / "pkg", state=overfit_tiny_lexicon(), beam_size=2)


def test_a_g2p_package_pronounces_words_as_its_generator_does(g2p_package, tmp_path):
    pronounce = load_pronouncer(g2p_package)
    words = list(TINY_LEXICON)
    assert [" ".join(p) in TINY_LEXICON[w] for w, p in zip(words, pronounce(words))] == [True] * len(words)
    generated = load_package(g2p_package).generate(words)
    assert [" ".join(p) for p in pronounce(words)] == [g.outputs[0] for g in generated]
    assert pronounce.letters == frozenset("".join(words))
    with pytest.raises(PackageError, match="a package for asr, not text2text"):
        load_pronouncer(tiny_asr_package(tmp_path / "asr"))


def test_a_tts_run_with_g2p_phonemes_trains_exports_and_pronounces_new_words_with_its_copy(
    g2p_package, tiny_corpus, tmp_path, capsys
):
    run = tmp_path / "run"
    overrides = tiny_tts_overrides(
        tiny_corpus, run, **{"tokenizer.kind": "g2p", "tokenizer.g2p": g2p_package}
    )
    run_main(capsys, "train", "-c", "tts/small.yaml", *overrides, check=True)
    tokenizer_dir = run / "tokenizer"
    config = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    assert (config["kind"], config["g2p"]) == ("g2p", G2P_DIR)
    assert sorted(p.name for p in (tokenizer_dir / G2P_DIR).iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer",
    ]
    experiment = load_experiment("tts/small.yaml", overrides)
    normalize = TextNormalizer(experiment.text)
    lines = [
        line for m in ("tts_train", "tts_dev", "tts_test") for line in tiny_corpus[m].read_text().splitlines()
    ]
    words = {w for line in lines for w in normalize(json.loads(line)["text"]).split()}
    lexicon = load_tokenizer(tokenizer_dir).lexicon
    spellable = {"".join(c for c in w if c in load_pronouncer(g2p_package).letters) for w in words} - {""}
    assert set(lexicon) == spellable  # every word of the three manifests, pronounced before training

    run_main(capsys, "export", str(run), str(tmp_path / "package"), check=True)
    package = load_model_package(tmp_path / "package")
    tokenizer = package.tokenizer
    assert isinstance(tokenizer, PronunciationTokenizer) and tokenizer.pronounce is not None
    new = [w for w in TINY_LEXICON if w not in tokenizer.lexicon]
    assert new, "the tiny corpus holds every word of TINY_LEXICON"
    generated = load_package(g2p_package).generate(new)
    assert [tokenizer.pronunciations(w) for w in new] == [g.outputs[0] for g in generated]
    spoken = load_package(tmp_path / "package").synthesize([" ".join(new)])[0]
    assert spoken.mel.shape[1] == package.config.model.n_mels
    phonemes = len(tokenizer.encode(" ".join(new)))
    assert spoken.alignment.shape[1] == phonemes  # the model read the G2P model's phonemes


def test_a_missing_g2p_package_is_a_one_line_error(tiny_corpus, tmp_path, capsys):
    overrides = tiny_tts_overrides(
        tiny_corpus, tmp_path / "run", **{"tokenizer.kind": "g2p", "tokenizer.g2p": tmp_path / "nothing"}
    )
    result = run_main(capsys, "train", "-c", "tts/small.yaml", *overrides)
    assert_one_line_error(result, "nothing: no config.json; not a model package")
    assert not (tmp_path / "run" / "tokenizer" / "tokenizer.json").exists()
