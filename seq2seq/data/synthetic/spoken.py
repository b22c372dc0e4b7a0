"""Speak a text file (or a manifest's texts) with many eSpeak NG voices: speakers to mix into a corpus.

A small real corpus (FSDD: five speakers) covers few voices; the same texts spoken by the synthetic corpus's
training voices, at random accents, rates and pitches, add many more. Only training voice variants speak,
so the synthetic corpus's held-out voices stay unheard by any model trained on this output.

Layout written under ``out_dir``: ``spoken.jsonl`` and ``wavs/spoken-<index>.wav``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from seq2seq.data.manifest import Utterance, read_manifest, text_lines, write_manifest
from seq2seq.data.synthetic.corpus import asr_voices, split_variants, synthesize_jobs

MANIFEST_NAME = "spoken.jsonl"
logger = logging.getLogger(__name__)


def read_sentences(text_file: str | Path) -> list[str]:
    """The sentences to speak: the non-empty lines of a UTF-8 text file, or the texts of a ``.jsonl``
    manifest (another corpus's transcripts). A bad line is one warning and passed over; a file with no
    sentence left is a one-line error."""
    path = Path(text_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    problems: list[str] = []
    if path.suffix == ".jsonl":
        utterances, problems = read_manifest(path)
        sentences = [u.text.strip() for u in utterances if u.text.strip()]
    else:
        sentences = [line.strip() for _, line in text_lines(path, problems) if line.strip()]
    for problem in problems:
        logger.warning("%s (line not spoken)", problem)
    if not sentences:
        raise ValueError(f"{path}: no sentences to speak" + (f" ({problems[0]})" if problems else ""))
    return sentences


def prepare_spoken(
    text_file: str | Path, out_dir: str | Path, seed: int = 0, sample_rate: int = 16000, num_workers: int = 2
) -> Path:
    """Speak every line of ``text_file`` once, each by a voice drawn from the training voices.

    Returns:
        The manifest path (``out_dir/spoken.jsonl``).
    """
    sentences = read_sentences(text_file)
    out_dir = Path(out_dir)
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    voices = asr_voices(split_variants()["train"], len(sentences), random.Random(seed))
    jobs = [
        (text, voice, str(out_dir / "wavs" / f"spoken-{index:05d}.wav"), sample_rate)
        for index, (text, voice) in enumerate(zip(sentences, voices))
    ]
    samples = synthesize_jobs(jobs, num_workers)
    utterances = [
        Utterance(path, n / sample_rate, text, speaker=voice.name, id=Path(path).stem)
        for (text, voice, path, _), n in zip(jobs, samples)
    ]
    return write_manifest(out_dir / MANIFEST_NAME, utterances)
