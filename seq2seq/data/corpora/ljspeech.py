"""LJSpeech-1.1: ``metadata.csv`` (``id|text|normalized_text``) and ``wavs/<id>.wav``; one speaker."""

from __future__ import annotations

import random
from pathlib import Path

from seq2seq.data.corpora import probe_utterance, write_split
from seq2seq.data.manifest import Utterance, text_lines


def _read_metadata(source_dir: Path, problems: list[str]) -> list[Utterance]:
    metadata = source_dir / "metadata.csv"
    utterances = []
    # Not the csv module: LJSpeech transcripts contain unbalanced quote characters.
    for number, line in text_lines(metadata, problems):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            problems.append(f"{metadata}:{number}: expected 'id|text|normalized_text'")
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        utterance = probe_utterance(
            source_dir / "wavs" / f"{fields[0]}.wav", text.strip(), fields[0], "LJ", problems
        )
        if utterance is not None:
            utterances.append(utterance)
    return utterances


def prepare_ljspeech(
    source_dir: str | Path, out_dir: str | Path, seed: int = 0, held_out_fraction: float = 0.025
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` for LJSpeech.

    The split is a seeded shuffle of the ids, so it is the same on every machine.

    Args:
        source_dir: the ``LJSpeech-1.1`` folder (``metadata.csv`` and ``wavs/``).
        out_dir: folder for the manifests.
        seed: seed of the split.
        held_out_fraction: fraction of utterances in each of dev and test (at least one each).

    Returns:
        Manifest path per split name.

    Raises:
        FileNotFoundError: ``metadata.csv`` is missing.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not (source_dir / "metadata.csv").is_file():
        raise FileNotFoundError(f"{source_dir / 'metadata.csv'}: no such file (is this LJSpeech-1.1?)")
    if not 0.0 <= held_out_fraction < 0.5:
        raise ValueError(f"held_out_fraction must be in [0, 0.5), got {held_out_fraction}")
    problems: list[str] = []
    utterances = sorted(_read_metadata(source_dir, problems), key=lambda u: u.id)
    random.Random(seed).shuffle(utterances)
    held_out = max(1, round(held_out_fraction * len(utterances))) if len(utterances) >= 3 else 0
    splits = {
        "dev": utterances[:held_out],
        "test": utterances[held_out : 2 * held_out],
        "train": utterances[2 * held_out :],
    }
    paths = {}
    for name, items in splits.items():
        paths[name] = write_split(
            out_dir, name, sorted(items, key=lambda u: u.id), problems if name == "train" else []
        )
    return paths
