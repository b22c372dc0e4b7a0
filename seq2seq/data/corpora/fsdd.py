"""The Free Spoken Digit Dataset (FSDD, CC BY-SA 4.0): isolated digits and connected-digit strings.

FSDD's ``recordings/`` holds ``{digit}_{speaker}_{index}.wav`` (8 kHz, mono). Splits are by speaker,
so the test speaker is never heard in training. Dev is a second held-out speaker, or (``dev_speaker=None``)
the first takes of every training speaker, FSDD's own held-out convention, so that one more speaker
trains. Two kinds of manifests per split:

    digits_<split>.jsonl      one recording each, text "seven"
    connected_<split>.jsonl   3-7 recordings of one speaker joined with short random pauses, written as
                              real WAV files under ``wavs/<split>/``; text "seven three oh ..."

Files with a name outside that pattern, or audio that cannot be read, are reported on one line each and
left out; the rest is prepared.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import soundfile

from seq2seq.data.corpora import probe_utterance, write_split
from seq2seq.data.manifest import Utterance

log = logging.getLogger(__name__)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
PAUSE_SECONDS = (0.05, 0.35)
DEV_TAKES = 5  # FSDD's README holds takes 0-4 of each digit and speaker out of training


def read_recordings(source_dir: Path, problems: list[str]) -> dict[str, list[Utterance]]:
    """Every usable recording, grouped by speaker, in a stable order."""
    folder = source_dir / "recordings" if (source_dir / "recordings").is_dir() else source_dir
    by_speaker: dict[str, list[Utterance]] = {}
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            problems.append(f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav; left out")
            continue
        digit, speaker, index = match.groups()
        utterance = probe_utterance(path, DIGIT_WORDS[int(digit)], path.stem, speaker, problems)
        if utterance is not None:
            by_speaker.setdefault(speaker, []).append(utterance)
    return by_speaker


def take(utterance: Utterance) -> int:
    """The take number of a recording, the last field of its id ``{digit}_{speaker}_{take}``."""
    return int(utterance.id.rsplit("_", 1)[1])


def connect(
    recordings: list[Utterance], count: int, out_dir: Path, prefix: str, rng: random.Random
) -> list[Utterance]:
    """``count`` connected-digit strings of 3-7 of one speaker's recordings, written as WAV files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_speaker: dict[str, list[Utterance]] = {}
    for utterance in recordings:
        by_speaker.setdefault(utterance.speaker, []).append(utterance)
    speakers = sorted(by_speaker)
    made = []
    for i in range(count):
        speaker = speakers[i % len(speakers)]
        parts = [rng.choice(by_speaker[speaker]) for _ in range(rng.randint(3, 7))]
        waves, rate = [], None
        for part in parts:
            wave, rate = soundfile.read(part.audio_filepath, dtype="float32", always_2d=True)
            waves.append(wave.mean(1))
            waves.append(np.zeros(int(rng.uniform(*PAUSE_SECONDS) * rate), dtype=np.float32))
        audio = np.concatenate(waves[:-1])
        path = out_dir / f"{prefix}-{i:05d}.wav"
        soundfile.write(path, audio, rate, subtype="PCM_16")
        text = " ".join(part.text for part in parts)
        made.append(Utterance(str(path), len(audio) / rate, text, speaker=speaker, id=path.stem))
    return made


def prepare_fsdd(
    source_dir: str | Path,
    out_dir: str | Path,
    test_speaker: str = "theo",
    dev_speaker: str | None = "nicolas",
    connected_train: int = 3000,
    connected_held_out: int = 300,
    seed: int = 0,
) -> dict[str, Path]:
    """Write isolated-digit and connected-digit manifests with whole speakers held out.

    Args:
        source_dir: the FSDD folder (holding ``recordings/``) or the recordings folder itself.
        out_dir: folder for manifests and the connected-digit WAV files.
        test_speaker: the speaker of the test split (never in training or dev).
        dev_speaker: the speaker of the dev split; None: dev is takes 0-4 of every training speaker, and
            every speaker but the test speaker trains (on its other takes).
        connected_train: connected-digit strings made from the training speakers.
        connected_held_out: connected-digit strings of each of dev and test.
        seed: seed of the strings and pauses.

    Returns:
        Manifest path per name (``digits_train``, ``connected_test``, ...).
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"{source_dir}: no such folder (the FSDD folder holding recordings/)")
    if test_speaker == dev_speaker:
        raise ValueError(f"test_speaker and dev_speaker are both {test_speaker!r}; hold out two speakers")
    problems: list[str] = []
    by_speaker = read_recordings(source_dir, problems)
    for name in (test_speaker, dev_speaker):
        if name is not None and name not in by_speaker:
            raise ValueError(
                f"{source_dir}: no recordings of speaker {name!r}; found {', '.join(sorted(by_speaker))}"
            )
    trained = [u for s in sorted(by_speaker) if s not in (test_speaker, dev_speaker) for u in by_speaker[s]]
    if dev_speaker is None:
        dev = [u for u in trained if take(u) < DEV_TAKES]
        trained = [u for u in trained if take(u) >= DEV_TAKES]
        if not dev or not trained:
            raise ValueError(
                f"{source_dir}: dev takes 0-{DEV_TAKES - 1} need takes {DEV_TAKES} and above to train on"
            )
    else:
        dev = by_speaker[dev_speaker]
    groups = {"train": trained, "dev": dev, "test": by_speaker[test_speaker]}
    rng, paths = random.Random(seed), {}
    for split, recordings in groups.items():
        count = connected_train if split == "train" else connected_held_out
        paths[f"digits_{split}"] = write_split(
            out_dir, f"digits_{split}", recordings, problems if split == "train" else []
        )
        joined = connect(recordings, count, out_dir / "wavs" / split, f"{split}", rng)
        paths[f"connected_{split}"] = write_split(out_dir, f"connected_{split}", joined, [])
    return paths
