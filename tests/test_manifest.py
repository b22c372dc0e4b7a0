"""Manifest reading keeps good lines and reports bad ones in one line each; writing is atomic and relative."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seq2seq.data.manifest import Utterance, read_manifest, write_manifest


def test_id_defaults_to_stem_and_offset():
    assert Utterance("/data/a/clip.wav", 1.5, "hi").id == "clip"
    assert Utterance("/data/a/clip.wav", 1.5, "hi", offset=12.5).id == "clip_12.50"
    assert Utterance("/data/a/clip.wav", 1.5, "hi", id="mine").id == "mine"
    with pytest.raises(ValueError, match="duration must be > 0"):
        Utterance("a.wav", 0.0, "hi")


def test_roundtrip_with_relative_paths(tmp_path):
    (tmp_path / "wavs").mkdir()
    utterances = [
        Utterance(str(tmp_path / "wavs" / "a.wav"), 1.25, "turn on the lights", speaker="en-us+m3"),
        Utterance(str(tmp_path / "wavs" / "b.wav"), 2.0, "set a timer", offset=0.5),
        Utterance("/elsewhere/c.flac", 3.0, "play jazz"),
    ]
    path = write_manifest(tmp_path / "train.jsonl", utterances)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["audio_filepath"] for r in records] == ["wavs/a.wav", "wavs/b.wav", "/elsewhere/c.flac"]
    assert records[0]["speaker"] == "en-us+m3" and "offset" not in records[0] and records[1]["offset"] == 0.5
    loaded, problems = read_manifest(path)
    assert problems == []
    assert loaded == utterances
    assert not list(tmp_path.glob(".train.jsonl.*"))  # no temporary file left behind


def test_bad_lines_are_reported_and_good_lines_load(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "one"},
        "{not json",
        {"audio_filepath": "b.wav", "duration": 1.0},
        {"audio_filepath": "c.wav", "duration": 0, "text": "zero"},
        {"audio_filepath": "a.wav", "duration": 2.0, "text": "again"},
        [1, 2, 3],
        {"audio_filepath": "d.wav", "duration": "long", "text": "d"},
        {"audio_filepath": "e.wav", "duration": 2.0, "text": "fine", "lang": "en"},
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n\n")
    utterances, problems = read_manifest(path)
    assert [u.id for u in utterances] == ["a", "e"]
    assert Path(utterances[0].audio_filepath) == tmp_path / "a.wav"
    assert len(problems) == 6
    assert problems[0].startswith(f"{path}:2: malformed JSON (")
    assert problems[1] == f"{path}:3: missing field 'text'"
    assert problems[2] == f"{path}:4: duration must be > 0, got 0"
    assert problems[3] == f"{path}:5: duplicate id 'a' (first on line 1)"
    assert problems[4] == f"{path}:6: expected a JSON object, got list"
    assert problems[5] == f"{path}:7: duration must be a number, got 'long'"
    assert all("\n" not in p for p in problems)


def test_write_replaces_atomically(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, [Utterance(str(tmp_path / "x.wav"), 1.0, "old")])
    write_manifest(
        path, [Utterance(str(tmp_path / "y.wav"), 1.0, "new"), Utterance(str(tmp_path / "z.wav"), 1.0, "n")]
    )
    utterances, _ = read_manifest(path)
    assert [u.text for u in utterances] == ["new", "n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]
