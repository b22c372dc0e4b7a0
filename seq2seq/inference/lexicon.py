"""Word lists for lexicon decoding: read a file, spell its words with a package's tokenizer, build the
tree the beam search walks (:mod:`seq2seq.decoding.lexicon`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from seq2seq.core.text import NUM_RESERVED, SPACE, CharTokenizer, Tokenizer
from seq2seq.data.manifest import text_lines
from seq2seq.decoding.lexicon import LexiconTrie


@dataclass(frozen=True)
class WordList:
    """Words with their weights (relative frequencies; 1 each when the file gives none).

    Attributes:
        path: where it was read ("" when built in memory).
        entries: (word, weight > 0), in file order; a repeated word adds its weights.
    """

    path: str
    entries: tuple[tuple[str, float], ...]

    @classmethod
    def read(cls, path: str | Path) -> WordList:
        """One word per line, optionally followed by a positive weight (``word<whitespace>weight``)."""
        weights: dict[str, float] = {}
        problems: list[str] = []
        try:
            lines = list(text_lines(path, problems))
        except OSError as err:
            raise ValueError(f"{path}: cannot read the word list ({err.strerror or err})") from None
        if problems:  # a word list is a setting, not data: a bad line stops the command
            raise ValueError(problems[0])
        for number, line in lines:
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise ValueError(f"{path}:{number}: expected 'word' or 'word weight', got {line.strip()!r}")
            try:
                weight = float(fields[1]) if len(fields) == 2 else 1.0
            except ValueError:
                raise ValueError(f"{path}:{number}: the weight {fields[1]!r} is not a number") from None
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"{path}:{number}: the weight {fields[1]!r} must be positive")
            weights[fields[0]] = weights.get(fields[0], 0.0) + weight
        if not weights:
            raise ValueError(f"{path}: the word list holds no word")
        return cls(str(path), tuple(weights.items()))


@dataclass(frozen=True)
class SpelledLexicon:
    """A word list's tree for one tokenizer, and the words it could not spell."""

    trie: LexiconTrie
    skipped: tuple[str, ...]


def check_word_list(path: str | Path, task: str, tokenizer: Tokenizer) -> SpelledLexicon:
    """A word list may go into a package only when that package's search can spell it (one-line errors)."""
    if task != "asr":
        raise ValueError(f"{path}: a word list serves the ASR search; this is a {task} package")
    return spell(WordList.read(path), tokenizer)


def spell(words: WordList, tokenizer: Tokenizer) -> SpelledLexicon:
    """The tree of ``words`` over ``tokenizer``'s ids; words with a character the tokenizer lacks are
    skipped (and listed).

    Raises:
        ValueError: the tokenizer does not spell words letter by letter (sentencepiece, phonemes).
    """
    if type(tokenizer) is not CharTokenizer or SPACE not in tokenizer.symbols:
        raise ValueError(
            f"{words.path or 'the word list'}: lexicon decoding needs a character tokenizer with a space "
            f"symbol; this package's is {type(tokenizer).__name__}"
        )
    ids = {symbol: NUM_RESERVED + i for i, symbol in enumerate(tokenizer.symbols)}
    space_id = ids.pop(SPACE)
    spelled, skipped = [], []
    for word, weight in words.entries:
        normalized = tokenizer.normalizer(word)
        if normalized and all(ch in ids for ch in normalized):
            spelled.append(([ids[ch] for ch in normalized], weight))
        else:
            skipped.append(word)
    trie = LexiconTrie.build(spelled, list(ids.values()), space_id, tokenizer.vocab_size)
    return SpelledLexicon(trie, tuple(skipped))
