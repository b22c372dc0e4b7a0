"""Preparers that turn public corpora into manifests: ``librispeech``, ``ljspeech``, ``commonvoice``.

Each preparer reads a corpus in its published layout, probes every audio file's header for its duration
(no decoding), skips files that are missing or unreadable with a one-line warning, and writes one
JSON Lines manifest per split. This module holds what they share.
"""

from __future__ import annotations

import logging
from pathlib import Path

from seq2seq.data.manifest import Utterance, write_manifest

logger = logging.getLogger(__name__)


def probe_utterance(
    audio_path: Path, text: str, utt_id: str, speaker: str | None, problems: list[str]
) -> Utterance | None:
    """Utterance for a whole audio file, its duration read from the header.

    Args:
        audio_path: the audio file.
        text: transcript.
        utt_id: unique id.
        speaker: speaker label, if any.
        problems: receives a one-line message when the file is missing or unreadable.

    Returns:
        The utterance, or None when the file cannot be used.
    """
    from seq2seq.core.audio import AudioError, audio_info  # torch-heavy; only needed while preparing

    try:
        info = audio_info(audio_path)
    except AudioError as error:
        problems.append(str(error))
        return None
    if info.frames <= 0 or info.duration <= 0:
        problems.append(f"{audio_path}: contains no audio samples")
        return None
    return Utterance(str(audio_path), float(info.duration), text, speaker=speaker, id=utt_id)


def write_split(out_dir: Path, split: str, utterances: list[Utterance], problems: list[str]) -> Path:
    """Write ``<out_dir>/<split>.jsonl`` and log each problem (and a summary) as a warning."""
    for problem in problems:
        logger.warning("%s", problem)
    if problems:
        logger.warning("%s: skipped %d of %d files", split, len(problems), len(utterances) + len(problems))
    return write_manifest(out_dir / f"{split}.jsonl", utterances)
