"""LibriSpeech: ``<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` next to ``<utt-id>.flac``."""

from __future__ import annotations

from pathlib import Path

from seq2seq.data.corpora import probe_utterance, write_split
from seq2seq.data.manifest import Utterance, text_lines


def _split_dirs(source_dir: Path) -> list[Path]:
    """Split folders (``train-clean-100``, ``dev-clean``...) under ``source_dir``, or itself if it is one."""
    splits = [d for d in sorted(source_dir.iterdir()) if d.is_dir() and any(d.glob("*/*/*.trans.txt"))]
    if not splits and any(source_dir.glob("*/*/*.trans.txt")):
        splits = [source_dir]
    return splits


def _read_split(split_dir: Path, problems: list[str]) -> list[Utterance]:
    utterances = []
    for transcript in sorted(split_dir.glob("*/*/*.trans.txt")):
        speaker = transcript.parent.parent.name
        for number, line in text_lines(transcript, problems):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text:
                problems.append(f"{transcript}:{number}: expected '<utterance-id> <text>'")
                continue
            utterance = probe_utterance(transcript.parent / f"{utt_id}.flac", text, utt_id, speaker, problems)
            if utterance is not None:
                utterances.append(utterance)
    return utterances


def prepare_librispeech(source_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write one manifest per LibriSpeech split found (``train-clean-100.jsonl``, ``dev-clean.jsonl``...).

    Args:
        source_dir: the ``LibriSpeech`` folder holding split folders (or a single split folder).
        out_dir: folder for the manifests.

    Returns:
        Manifest path per split name.

    Raises:
        FileNotFoundError: no LibriSpeech split under ``source_dir``.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    splits = _split_dirs(source_dir) if source_dir.is_dir() else []
    if not splits:
        raise FileNotFoundError(f"{source_dir}: no LibriSpeech split (*/*/*.trans.txt) found")
    paths = {}
    for split_dir in splits:
        problems: list[str] = []
        utterances = _read_split(split_dir, problems)
        paths[split_dir.name] = write_split(out_dir, split_dir.name, utterances, problems)
    return paths
