"""Language-model training text from the sentence generator: every pattern family (training and held-out
ones), every domain and the whole lexicon, as a large text corpus would hold them, minus the sentences of
the evaluation manifests (so that perplexity and LM-fused WER on them measure generalisation).

``patterns="train"`` draws the training families only: an LM that has never read the phrasings of the
held-out test sets, so that its fused WER on them says what it does for phrasings nobody generated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from seq2seq.data.synthetic.sentences import generate_sentences
from seq2seq.data.text_corpus import read_sentences

CHUNK = 20000  # sentences drawn per generator call; each call has its own seed
HELD_OUT_SHARE = 0.3  # share of open slot words from the words the acoustic training text never holds
Patterns = Literal["all", "train"]  # which pattern families the text is drawn from


def _key(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def excluded_sentences(paths: Iterable[str | Path]) -> set[str]:
    """The sentences of manifests or text files, as compared (lowercase, single spaces)."""
    taken: set[str] = set()
    for path in paths:
        sentences, problems = read_sentences(path)
        if problems:
            raise ValueError(problems[0])
        taken.update(_key(s) for s in sentences)
    return taken


def lm_sentences(
    count: int, seed: int, exclude: set[str], patterns: Patterns = "all"
) -> tuple[list[str], int]:
    """``count`` generated sentences none of which is in ``exclude``, and how many were dropped.

    Chunks alternate between training and held-out pattern families (``patterns="all"``) or are all
    training families (``"train"``); duplicates are kept (a corpus repeats its frequent sentences).
    """
    chosen: list[str] = []
    dropped, chunk = 0, 0
    while len(chosen) < count:
        for sentence in generate_sentences(
            CHUNK, seed * 1_000_003 + chunk, patterns == "train" or chunk % 2 == 0, None, HELD_OUT_SHARE
        ):
            if _key(sentence) in exclude:
                dropped += 1
            elif len(chosen) < count:
                chosen.append(sentence)
        chunk += 1
    return chosen, dropped


def write_lm_text(
    out_file: str | Path, count: int, seed: int, exclude: Iterable[str | Path], patterns: Patterns = "all"
) -> tuple[int, int]:
    """Write ``count`` sentences, one a line, to ``out_file`` (all or nothing).

    Returns:
        sentences written, and drawn sentences left out because ``exclude`` holds them.
    """
    sentences, dropped = lm_sentences(count, seed, excluded_sentences(exclude), patterns)
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return len(sentences), dropped
