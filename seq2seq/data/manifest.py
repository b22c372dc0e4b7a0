"""Manifests: one JSON object per line describing an utterance, with NeMo's field names.

    {"audio_filepath": "wavs/a.wav", "duration": 2.31, "text": "turn on the lights", "offset": 0.0,
     "speaker": "en-us+m3", "id": "a"}

Relative audio paths are relative to the manifest's folder, so a corpus folder can be moved as a whole.
Reading never stops at a bad line: good lines load and each bad one becomes a one-line problem report.
Lines are decoded one at a time, so one line that is not UTF-8 costs that line only.
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_FIELDS = ("audio_filepath", "duration", "text")


@dataclass(frozen=True)
class Utterance:
    """One manifest entry.

    Attributes:
        audio_filepath: path to the audio file (absolute once read from a manifest).
        duration: length of the segment in seconds (> 0).
        text: transcript.
        offset: start of the segment inside the file, in seconds.
        speaker: speaker or voice label, if known.
        id: unique name; defaults to the file stem, plus ``_<offset>`` for segments that do not start at 0.
    """

    audio_filepath: str
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"text must be a string, got {type(self.text).__name__}")
        for name in ("duration", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset}")
        if not self.id:
            stem = Path(self.audio_filepath).stem
            object.__setattr__(self, "id", f"{stem}_{self.offset:.2f}" if self.offset > 0 else stem)


def decode_line(raw: bytes) -> str:
    """One line of a UTF-8 text file read as bytes, without its line break (and a leading BOM).

    Raises:
        ValueError: the line is not UTF-8, e.g. ``"not UTF-8 (byte 0xff at column 41)"`` (columns count
            bytes from 1).
    """
    raw = raw.rstrip(b"\r\n").removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})") from None


def text_lines(path: str | Path, problems: list[str]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 text file, decoded one line at a time.

    A line that is not UTF-8 adds ``"<path>:<line>: not UTF-8 (...)"`` to ``problems`` and is passed
    over; every other line is yielded (blank ones too), so one bad byte costs one line, not the file.
    """
    with Path(path).open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                yield number, decode_line(raw)
            except ValueError as error:
                problems.append(f"{path}:{number}: {error}")


def _parse_line(line: str, base: Path) -> Utterance:
    """Utterance from one JSON line; raises ValueError with a short reason."""
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise ValueError(f"missing field '{name}'")
    audio = record["audio_filepath"]
    if not isinstance(audio, str) or not audio:
        raise ValueError("field 'audio_filepath' must be a non-empty string")
    speaker = record.get("speaker")
    return Utterance(
        audio_filepath=str(base / audio) if not os.path.isabs(audio) else audio,
        duration=record["duration"],
        text=record["text"],
        offset=record.get("offset", 0.0) or 0.0,
        speaker=None if speaker is None else str(speaker),
        id=str(record.get("id") or ""),
    )


def read_manifest(path: str | Path) -> tuple[list[Utterance], list[str]]:
    """Read a JSON Lines manifest.

    Args:
        path: the manifest file.

    Returns:
        utterances: every valid line, in file order, with absolute audio paths.
        problems: one line per rejected line, e.g. ``"train.jsonl:17: missing field 'text'"``.

    Raises:
        FileNotFoundError: the manifest itself does not exist.
    """
    path = Path(path)
    base = path.resolve().parent
    utterances: list[Utterance] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in text_lines(path, problems):
        if not line.strip():
            continue
        try:
            utterance = _parse_line(line, base)
        except ValueError as error:
            problems.append(f"{path}:{number}: {error}")
            continue
        if utterance.id in first_line:
            first = first_line[utterance.id]
            problems.append(f"{path}:{number}: duplicate id '{utterance.id}' (first on line {first})")
            continue
        first_line[utterance.id] = number
        utterances.append(utterance)
    return utterances, problems


def _record(utterance: Utterance, base: Path) -> dict[str, Any]:
    audio = Path(utterance.audio_filepath)
    absolute = audio if audio.is_absolute() else Path.cwd() / audio
    try:
        audio_path = absolute.resolve().relative_to(base).as_posix()
    except ValueError:  # outside the manifest's folder: keep it absolute
        audio_path = str(absolute.resolve())
    record: dict[str, Any] = {
        "audio_filepath": audio_path,
        "duration": round(float(utterance.duration), 4),
        "text": utterance.text,
    }
    if utterance.offset:
        record["offset"] = round(float(utterance.offset), 4)
    if utterance.speaker is not None:
        record["speaker"] = utterance.speaker
    record["id"] = utterance.id
    return record


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> Path:
    """Write a manifest atomically (a temporary file renamed into place), so readers never see half of one.

    Audio paths inside the manifest's folder are written relative to it; others stay absolute.

    Args:
        path: destination ``.jsonl`` file; parent folders are created.
        utterances: entries to write, in order.

    Returns:
        The manifest path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    descriptor, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=base)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            for utterance in utterances:
                out.write(json.dumps(_record(utterance, base), ensure_ascii=False) + "\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
