"""The FSDD preparer: speaker-disjoint splits, connected-digit strings as real WAV files, bad files reported.

Real recordings are read from the shared copy (`../shared/data/fsdd`) where it exists; the layout cases use
tiny synthetic files in the same layout, so they run everywhere.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from support import ROOT, run_cli

from seq2seq.core.audio import audio_info
from seq2seq.data.corpora.fsdd import DIGIT_WORDS, prepare_fsdd, take
from seq2seq.data.manifest import read_manifest
from seq2seq.demo import ASR_CONFIG
from seq2seq.experiments import PACKAGED_CONFIGS, load_experiment

SHARED = ROOT.parent / "shared" / "data" / "fsdd"
needs_fsdd = pytest.mark.skipif(
    not (SHARED / "recordings").is_dir(), reason=f"FSDD not found at {SHARED} (shared data of the project)"
)


def fake_fsdd(root: Path, speakers=("anna", "bob", "carl", "dora"), per_digit: int = 2) -> Path:
    """FSDD's layout with short tones: ``recordings/{digit}_{speaker}_{index}.wav`` at 8 kHz."""
    folder = root / "recordings"
    folder.mkdir(parents=True)
    rate = 8000
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in range(per_digit):
                t = np.arange(int(0.2 * rate)) / rate
                wave = 0.1 * np.sin(2 * np.pi * (200 + 30 * digit + 5 * s) * t)
                soundfile.write(folder / f"{digit}_{speaker}_{index}.wav", wave.astype(np.float32), rate)
    return root


def test_splits_are_by_speaker_and_connected_strings_are_real_audio(tmp_path):
    source = fake_fsdd(tmp_path / "fsdd")
    paths = prepare_fsdd(source, tmp_path / "out", test_speaker="dora", dev_speaker="carl",
                         connected_train=12, connected_held_out=5)  # fmt: skip
    speakers = {name: {u.speaker for u in read_manifest(path)[0]} for name, path in paths.items()}
    assert speakers["digits_train"] == speakers["connected_train"] == {"anna", "bob"}
    assert speakers["digits_dev"] == speakers["connected_dev"] == {"carl"}
    assert speakers["digits_test"] == speakers["connected_test"] == {"dora"}
    isolated = read_manifest(paths["digits_train"])[0]
    assert len(isolated) == 2 * 10 * 2 and {u.text for u in isolated} == set(DIGIT_WORDS)
    connected = read_manifest(paths["connected_test"])[0]
    assert len(connected) == 5
    for utterance in connected:
        words = utterance.text.split()
        assert 3 <= len(words) <= 7 and set(words) <= set(DIGIT_WORDS)
        info = audio_info(utterance.audio_filepath)  # a real file, as long as its parts and pauses
        assert info.samplerate == 8000 and abs(info.duration - utterance.duration) < 1e-3
        assert (
            len(words) * 0.2 + (len(words) - 1) * 0.05
            <= info.duration
            <= len(words) * 0.2 + (len(words) - 1) * 0.35 + 1e-3
        )
    again = prepare_fsdd(source, tmp_path / "again", test_speaker="dora", dev_speaker="carl",
                         connected_train=12, connected_held_out=5)  # fmt: skip
    assert [u.text for u in read_manifest(again["connected_train"])[0]] == [
        u.text for u in read_manifest(paths["connected_train"])[0]
    ]  # same seed, same strings


def test_without_a_dev_speaker_dev_is_the_first_takes_of_every_training_speaker(tmp_path):
    """Five of six speakers train (leave one speaker out); dev holds out takes 0-4, never the test speaker."""
    source = fake_fsdd(tmp_path / "fsdd", per_digit=7)
    paths = prepare_fsdd(source, tmp_path / "out", test_speaker="dora", dev_speaker=None,
                         connected_train=12, connected_held_out=6)  # fmt: skip
    manifests = {name: read_manifest(path)[0] for name, path in paths.items()}
    assert {u.speaker for u in manifests["digits_train"]} == {"anna", "bob", "carl"}
    assert {u.speaker for u in manifests["connected_dev"]} == {"anna", "bob", "carl"}
    assert {u.speaker for u in manifests["digits_test"]} == {"dora"}
    takes = {name: {take(u) for u in manifests[f"digits_{name}"]} for name in ("train", "dev")}
    assert takes == {"train": {5, 6}, "dev": {0, 1, 2, 3, 4}}
    assert len(manifests["digits_train"]) == 3 * 10 * 2 and len(manifests["digits_dev"]) == 3 * 10 * 5
    assert len(manifests["digits_test"]) == 10 * 7  # every take of the test speaker
    train_ids = {u.id for u in manifests["digits_train"]}
    assert not train_ids & {u.id for u in manifests["digits_dev"] + manifests["digits_test"]}


def test_dev_speaker_none_on_the_command_line(tmp_path):
    source = fake_fsdd(tmp_path / "fsdd", speakers=("anna", "bob"), per_digit=6)
    args = ("prepare", "fsdd", str(source), str(tmp_path / "out"), "--test-speaker", "bob", "--dev-speaker")
    result = run_cli(*args, "none", "--connected-train", "4", "--connected-held-out", "2")
    assert result.returncode == 0, result.stderr
    assert "digits_dev: 50 utterances" in result.stdout and "digits_train: 10 utterances" in result.stdout
    too_few = fake_fsdd(tmp_path / "few", speakers=("anna", "bob"), per_digit=3)
    result = run_cli("prepare", "fsdd", str(too_few), str(tmp_path / "out2"), "--test-speaker", "bob",
                     "--dev-speaker", "none")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dev takes 0-4 need takes 5 and above to train on" in result.stderr


def test_malformed_names_and_broken_files_are_reported_and_left_out(tmp_path, caplog):
    source = fake_fsdd(tmp_path / "fsdd")
    (source / "recordings" / "seven_anna_3.wav").write_bytes(b"RIFF")
    (source / "recordings" / "1_bob_9.wav").write_bytes(b"not audio at all")
    (source / "recordings" / "2_anna_7.wav").symlink_to(source / "recordings" / "missing.wav")
    with caplog.at_level(logging.WARNING):
        paths = prepare_fsdd(source, tmp_path / "out", test_speaker="dora", dev_speaker="carl",
                             connected_train=4, connected_held_out=2)  # fmt: skip
    problems = [r.getMessage() for r in caplog.records if "skipped" not in r.getMessage()]
    assert len(problems) == 3 and all("\n" not in p for p in problems)
    assert any("seven_anna_3.wav: name is not" in p for p in problems)
    assert any("1_bob_9.wav:" in p for p in problems) and any(
        "2_anna_7.wav: no such file" in p for p in problems
    )
    assert len(read_manifest(paths["digits_train"])[0]) == 2 * 10 * 2  # every good file kept


def test_unknown_held_out_speaker_is_one_line_error_through_the_cli(tmp_path):
    source = fake_fsdd(tmp_path / "fsdd", speakers=("anna", "bob", "carl"), per_digit=1)
    result = run_cli("prepare", "fsdd", str(source), str(tmp_path / "out"), "--test-speaker", "zed")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no recordings of speaker 'zed'; found anna, bob, carl" in result.stderr


@needs_fsdd
def test_the_shared_fsdd_copy_prepares_with_one_speaker_held_out(tmp_path):
    recordings = tmp_path / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for path in sorted((SHARED / "recordings").glob("*_[0-4].wav")):  # 5 takes per digit and speaker
        (recordings / path.name).symlink_to(path)
    paths = prepare_fsdd(tmp_path / "fsdd", tmp_path / "out", connected_train=20, connected_held_out=10)
    train, test = (read_manifest(paths[f"digits_{s}"])[0] for s in ("train", "test"))
    assert {u.speaker for u in test} == {"theo"} and "theo" not in {u.speaker for u in train}
    assert len(train) == 4 * 10 * 5 and len(test) == 50
    assert all(0.1 < u.duration < 2.5 for u in train + test)
    shutil.rmtree(tmp_path / "out")


def test_fsdd_config_fine_tunes_the_demo_model():
    """`--init-from runs/demo/asr_model` needs the demo's architecture: every model field is the same."""
    demo = load_experiment(PACKAGED_CONFIGS / ASR_CONFIG).model
    fsdd = load_experiment(PACKAGED_CONFIGS / "asr" / "fsdd.yaml").model
    assert fsdd == demo
    assert fsdd.encoder_kind == "conformer"
