"""Deterministic English sentences for the synthetic corpus, from the patterns of :mod:`.grammar`.

Output is already normalised the way ``TextNormalizer`` would leave it: lowercase words separated by single
spaces, no punctuation, numbers spelled out.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

from seq2seq.data.synthetic import grammar, numbers
from seq2seq.data.synthetic.grammar import Family, Slots, families
from seq2seq.data.synthetic.lexicon import lexicon

# How often each domain is drawn: open sentences carry the vocabulary, the domains the number phrasings.
DOMAIN_WEIGHTS = {"open": 0.45, "digits": 0.09, "times": 0.09, "alarms": 0.09, "dates": 0.09}
DOMAIN_WEIGHTS |= {"devices": 0.09, "amounts": 0.1}


@functools.lru_cache(maxsize=1)
def template_words() -> frozenset[str]:
    """Every word the patterns and number phrasings spell out literally (read from their source), which
    training text contains whatever is drawn, so none of them may be a held-out word."""
    source = "".join(Path(module.__file__).read_text() for module in (grammar, numbers))
    spelled = " ".join(numbers.ordinal_words(k) for k in range(1, 100))  # made, not written: "seventeenth"
    return frozenset(re.findall(r"[a-z]+(?:'[a-z]+)?", source + " " + spelled))


def slots(held_out_share: float) -> Slots:
    """Training words only (0), or that share of slot words drawn from the held-out words."""
    train = lexicon(held_out=False, reserved=template_words())
    if held_out_share <= 0:
        return Slots(train)
    return Slots(train, lexicon(held_out=True, reserved=template_words()), held_out_share)


def generate_sentences(
    count: int,
    seed: int = 0,
    train_patterns: bool = True,
    domains: tuple[str, ...] | None = None,
    held_out_share: float = 0.0,
) -> list[str]:
    """``count`` sentences, identical for the same arguments.

    Args:
        count: number of sentences.
        seed: seed of the private ``random.Random``.
        train_patterns: draw from the training patterns (True) or from the held-out ones.
        domains: restrict to these domains (None: all, weighted by ``DOMAIN_WEIGHTS``).
        held_out_share: share of open slot words drawn from the held-out vocabulary.
    """
    r = random.Random(seed)
    source = slots(held_out_share)
    pools: list[tuple[tuple[Family, ...], float]] = []
    for domain, weight in DOMAIN_WEIGHTS.items():
        members = families(domain, train_patterns)
        if members and (domains is None or domain in domains):
            pools.append((members, weight))
    groups, weights = zip(*pools)
    return [" ".join(r.choice(r.choices(groups, weights)[0]).make(r, source).split()) for _ in range(count)]


def vocabulary(sentences: list[str]) -> set[str]:
    """Distinct words of some sentences."""
    return {word for sentence in sentences for word in sentence.split()}


def oov_rate(sentences: list[str], known: set[str]) -> float:
    """Share of running words of ``sentences`` not in ``known`` (the training text's words)."""
    words = [w for s in sentences for w in s.split()]
    return sum(w not in known for w in words) / max(1, len(words))
