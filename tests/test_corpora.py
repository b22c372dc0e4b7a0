"""Corpus preparers on tiny trees in the published layouts, with real audio and deliberate breakage."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile

from seq2seq.data.corpora.commonvoice import prepare_commonvoice
from seq2seq.data.corpora.librispeech import prepare_librispeech
from seq2seq.data.corpora.ljspeech import prepare_ljspeech
from seq2seq.data.manifest import read_manifest


def write_audio(path, seconds, rate=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, format=fmt)


def test_librispeech_one_manifest_per_split(tmp_path, caplog):
    root = tmp_path / "LibriSpeech"
    layout = {"train-clean-100": {("19", "198"): 3, ("26", "495"): 2}, "dev-clean": {("84", "121"): 2}}
    for split, chapters in layout.items():
        for (speaker, chapter), count in chapters.items():
            folder = root / split / speaker / chapter
            lines = []
            for i in range(count):
                utt = f"{speaker}-{chapter}-{i:04d}"
                write_audio(folder / f"{utt}.flac", 0.5 + 0.25 * i)
                lines.append(f"{utt} HELLO WORLD NUMBER {i}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "train-clean-100/26/495/26-495-0001.flac").unlink()  # listed in the transcript, file missing
    with caplog.at_level(logging.WARNING):
        paths = prepare_librispeech(root, tmp_path / "manifests")
    assert sorted(paths) == ["dev-clean", "train-clean-100"]
    assert paths["train-clean-100"].name == "train-clean-100.jsonl"
    train, problems = read_manifest(paths["train-clean-100"])
    assert problems == []
    assert [u.id for u in train] == ["19-198-0000", "19-198-0001", "19-198-0002", "26-495-0000"]
    assert [u.duration for u in train] == [0.5, 0.75, 1.0, 0.5]
    assert train[1].text == "HELLO WORLD NUMBER 1" and train[1].speaker == "19"
    assert any(r.getMessage().endswith("26-495-0001.flac: no such file") for r in caplog.records)
    assert len(read_manifest(paths["dev-clean"])[0]) == 2


def test_ljspeech_split_is_deterministic_and_complete(tmp_path, caplog):
    root = tmp_path / "LJSpeech-1.1"
    rows = []
    for i in range(40):
        utt = f"LJ001-{i:04d}"
        if i != 7:
            write_audio(root / "wavs" / f"{utt}.wav", 0.3, rate=22050)
        rows.append(f'{utt}|Text {i}, with "quotes|text {i} with quotes')
    (root / "wavs" / "LJ001-0003.wav").write_bytes(b"")  # empty file
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        first = prepare_ljspeech(root, tmp_path / "a", held_out_fraction=0.1)
    second = prepare_ljspeech(root, tmp_path / "b", held_out_fraction=0.1)
    splits = {name: read_manifest(path)[0] for name, path in first.items()}
    assert {name: len(u) for name, u in splits.items()} == {"dev": 4, "test": 4, "train": 30}
    ids = [u.id for us in splits.values() for u in us]
    assert len(set(ids)) == 38 and "LJ001-0007" not in ids and "LJ001-0003" not in ids
    by_id = {u.id: u for us in splits.values() for u in us}
    assert by_id["LJ001-0001"].text == "text 1 with quotes" and by_id["LJ001-0001"].speaker == "LJ"
    assert by_id["LJ001-0001"].duration == pytest.approx(0.3, abs=1e-4)
    for name in first:
        assert [u.id for u in read_manifest(second[name])[0]] == [u.id for u in splits[name]]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.endswith("LJ001-0007.wav: no such file") for m in messages)
    assert any(m.endswith("LJ001-0003.wav: file is empty") for m in messages)


def test_commonvoice_reads_mp3_and_reports_unreadable_clips(tmp_path, caplog):
    root = tmp_path / "cv" / "en"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
    clips = {"train": ["a.mp3", "b.mp3", "bad.mp3", "gone.mp3"], "dev": ["c.mp3"], "test": ["d.mp3"]}
    for split, names in clips.items():
        rows = [f'client{i}\t{name}\t"Hello" there {name}\t2\t0\t\t\t' for i, name in enumerate(names)]
        (root / f"{split}.tsv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.tsv").write_text(header + "\n".join(rows) + "\n")
        for name in names:
            if name not in ("bad.mp3", "gone.mp3"):
                write_audio(root / "clips" / name, 1.0, fmt="MP3")
    (root / "clips" / "bad.mp3").write_text("not audio")
    with caplog.at_level(logging.WARNING):
        paths = prepare_commonvoice(root, tmp_path / "out")
    assert sorted(paths) == ["dev", "test", "train"]
    train = read_manifest(paths["train"])[0]
    assert [u.id for u in train] == ["a", "b"]
    assert train[0].duration == pytest.approx(1.0, abs=0.05)
    assert train[0].text == '"Hello" there a.mp3' and train[1].speaker == "client1"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.endswith("bad.mp3: not an audio file (format not recognised)") for m in messages)
    assert any(m.endswith("gone.mp3: no such file") for m in messages)


def test_missing_corpus_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LibriSpeech split"):
        prepare_librispeech(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        prepare_ljspeech(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        prepare_commonvoice(tmp_path, tmp_path / "out")
