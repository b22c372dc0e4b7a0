"""``prepare spoken``: a text file spoken by the synthetic corpus's training voices; and
``data.extra_train_manifests``, which mixes such a manifest into a run's training set and tokenizer."""

from __future__ import annotations

import logging

import pytest
import soundfile
from support import CONFIGS, assert_one_line_error, run_main, tiny_asr_overrides, write_tone

from seq2seq.core.config import ConfigError
from seq2seq.core.text import CharTokenizer
from seq2seq.data.config import DataConfig
from seq2seq.data.manifest import Utterance, read_manifest, write_manifest
from seq2seq.data.synthetic import corpus
from seq2seq.data.synthetic.corpus import split_variants
from seq2seq.data.synthetic.spoken import prepare_spoken
from seq2seq.experiments import load_experiment
from seq2seq.training.datamodules import ASRDataModule
from seq2seq.training.run import check_manifests, prepare_tokenizer

SENTENCES = ["five three seven", "", "zero one", "nine nine two eight"]


def test_every_line_is_spoken_once_by_training_voices_and_the_seed_fixes_the_audio(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_SIZE", 2)  # two blocks, scheduled differently by 1 and 2 workers
    text = tmp_path / "digits.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    first = prepare_spoken(text, tmp_path / "a", seed=3, sample_rate=8000, num_workers=2)
    second = prepare_spoken(text, tmp_path / "b", seed=3, sample_rate=8000, num_workers=1)
    assert first.read_text() == second.read_text()
    utterances, problems = read_manifest(first)
    assert not problems and [u.text for u in utterances] == [s for s in SENTENCES if s]
    assert {u.speaker.partition("+")[2] for u in utterances} <= set(split_variants()["train"])
    for utterance in utterances:
        info = soundfile.info(utterance.audio_filepath)
        assert info.samplerate == 8000 and abs(info.duration - utterance.duration) < 1e-3
        assert 0.4 < utterance.duration < 4.0
    # A manifest's texts are spoken as well (another corpus's transcripts), by other voices for another seed.
    again = prepare_spoken(first, tmp_path / "c", seed=4, sample_rate=8000, num_workers=1)
    respoken, _ = read_manifest(again)
    assert [u.text for u in respoken] == [u.text for u in utterances]
    assert [u.speaker for u in respoken] != [u.speaker for u in utterances]


def test_a_missing_or_empty_text_file_is_a_one_line_error(tmp_path, capsys):
    missing = run_main(capsys, "prepare", "spoken", tmp_path / "gone.txt", tmp_path / "out")
    assert_one_line_error(missing, "gone.txt", "no such file")
    empty = tmp_path / "empty.txt"
    empty.write_bytes("\n  \ncaf\xe9\n".encode("latin-1"))
    assert_one_line_error(
        run_main(capsys, "prepare", "spoken", empty, tmp_path / "out"),
        "empty.txt",
        "no sentences",
        ":3: not UTF-8",
    )
    assert not (tmp_path / "out" / "spoken.jsonl").exists()


def test_a_line_that_is_not_utf8_is_reported_and_the_others_are_spoken(tmp_path, caplog):
    text = tmp_path / "mixed.txt"
    text.write_bytes("one two\ncaf\xe9\nthree\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        manifest = prepare_spoken(text, tmp_path / "out", num_workers=1)
    assert [u.text for u in read_manifest(manifest)[0]] == ["one two", "three"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{text}:2: not UTF-8 (byte 0xe9 at column 4) (line not spoken)"
    ]


def manifest_of(path, texts):
    utterances = [
        Utterance(str(write_tone(path.parent / f"{path.stem}{i}.wav")), 0.3, t) for i, t in enumerate(texts)
    ]
    return str(write_manifest(path, utterances))


def test_extra_manifests_join_the_training_split_only(tmp_path):
    real = manifest_of(tmp_path / "real.jsonl", ["one two", "three"])
    spoken = manifest_of(tmp_path / "spoken.jsonl", ["four", "five six", "seven"])
    config = DataConfig(
        real, real, real, extra_train_manifests=(spoken,), num_workers=0, cache_features=False
    )
    assert config.train_manifests == (real, spoken)
    module = ASRDataModule(config, CharTokenizer.build(["one two three four five six seven"]))
    train = [u.text for u in module._dataset("train").utterances]
    assert train == ["one two", "three", "four", "five six", "seven"]
    assert [u.text for u in module._dataset("dev").utterances] == ["one two", "three"]
    with pytest.raises(ValueError, match="extra_train_manifests"):
        DataConfig(real, real, extra_train_manifests=("",))


def test_the_tokenizer_reads_the_extra_texts_and_a_missing_extra_manifest_fails_first(tiny_corpus, tmp_path):
    spoken = manifest_of(tmp_path / "spoken.jsonl", ["route 66"])  # no digit in the synthetic texts
    overrides = tiny_asr_overrides(
        tiny_corpus, tmp_path / "run", **{"data.extra_train_manifests": f"[{spoken}]"}
    )
    experiment = load_experiment(CONFIGS / "asr" / "small.yaml", overrides)
    assert experiment.data.extra_train_manifests == (spoken,)
    check_manifests(experiment)
    tokenizer, _ = prepare_tokenizer(experiment, tmp_path / "run", ASRDataModule.texts)
    assert not tokenizer.unknown_characters("6") and tokenizer.decode(tokenizer.encode("66")) == "66"
    without = load_experiment(CONFIGS / "asr" / "small.yaml", tiny_asr_overrides(tiny_corpus, tmp_path / "b"))
    alone, _ = prepare_tokenizer(without, tmp_path / "b", ASRDataModule.texts)
    assert alone.unknown_characters("6") == {"6": 1}
    missing = [*overrides, f"--data.extra_train_manifests=[{tmp_path / 'gone.jsonl'}]"]
    with pytest.raises(ConfigError, match="gone.jsonl: no such manifest file"):
        check_manifests(load_experiment(CONFIGS / "asr" / "small.yaml", missing))
