"""Scoring against several references: phoneme error rate (PER) and word error rate (WER) for G2P.

A word is correct when its hypothesis equals ANY of its references; its phoneme errors are the edit
distance to the closest reference, over that reference's length (the convention of the G2P literature,
e.g. Bisani & Ney 2008, Phonetisaurus and CMU g2p-seq2seq).

References in ARPAbet with stress digits (``AH0``, ``EY1``) are also scored with the digits stripped from
both sides, so one model trained with stress reports its PER/WER with stress and without.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.data.corpora.cmudict import has_stress, strip_stress


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (substitutions, insertions, deletions cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def closest_reference(hypothesis: Sequence, references: Sequence[Sequence]) -> tuple[int, int]:
    """(edits, reference length) of the reference closest to ``hypothesis`` (ties: the shorter reference,
    so the rate is never flattered by a longer one)."""
    return min((edit_distance(hypothesis, r), len(r)) for r in references)


@dataclass
class MultiReferenceScore:
    """Running PER/WER totals: ``add`` one hypothesis with its references at a time."""

    edits: int = 0
    reference_symbols: int = 0
    words: int = 0
    wrong_words: int = 0

    def add(self, hypothesis: Sequence, references: Sequence[Sequence]) -> tuple[int, int]:
        """Count one entry; returns its (edits, length of the closest reference)."""
        edits, length = closest_reference(list(hypothesis), [list(r) for r in references])
        self.edits += edits
        self.reference_symbols += length
        self.words += 1
        self.wrong_words += edits > 0
        return edits, length

    @property
    def per(self) -> float:
        return self.edits / max(self.reference_symbols, 1)

    @property
    def wer(self) -> float:
        return self.wrong_words / max(self.words, 1)


@dataclass
class Text2TextEvaluation:
    """A manifest's scores: PER, WER, entries scored, entries refused, words per second, and, when the
    references carry stress digits, the same scores with them stripped (``None`` otherwise)."""

    per: float
    wer: float
    entries: int
    scored: int
    words_per_second: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    without_stress: MultiReferenceScore | None = None


def evaluate_text2text(generator, manifest: str | Path, batch_size: int = 64) -> Text2TextEvaluation:
    """Generate every entry of a text-pair manifest and score it against all its references.

    Raises:
        ValueError: a line of the manifest is malformed (the first such line is named).
    """
    from seq2seq.data.text_pairs import read_text_manifest

    pairs, problems = read_text_manifest(manifest)
    if problems:
        raise ValueError(problems[0])
    start = time.perf_counter()
    results = generator.generate([p.text for p in pairs], batch_size=batch_size)
    seconds = time.perf_counter() - start
    score, unstressed, stressed, rows = MultiReferenceScore(), MultiReferenceScore(), False, []
    for pair, result in zip(pairs, results):
        row: dict[str, Any] = {"id": pair.id, "text": pair.text, "references": list(pair.references)}
        if result.error:
            rows.append({**row, "error": result.error})
            continue
        hypothesis = result.outputs[0] if result.outputs else ""
        symbols, references = hypothesis.split(), [r.split() for r in pair.references]
        edits, length = score.add(symbols, references)
        stressed = stressed or has_stress(references)
        unstressed.add(strip_stress(symbols), [strip_stress(r) for r in references])
        rows.append({**row, "hypothesis": hypothesis, "edits": edits, "reference_length": length})
    rate = score.words / max(seconds, 1e-9)
    return Text2TextEvaluation(
        score.per, score.wer, len(pairs), score.words, rate, rows, unstressed if stressed else None
    )
