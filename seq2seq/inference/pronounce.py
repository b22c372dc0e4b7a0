"""A G2P (text2text) package as the pronouncer of a TTS model's ``g2p`` tokenizer: words -> phonemes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seq2seq.core.package import PackageError, read_package_config
from seq2seq.core.text import SPACE, PronunciationTokenizer, Tokenizer
from seq2seq.inference.generate import Generator
from seq2seq.inference.packages import load_model_package_with
from seq2seq.models.text2text import Text2TextModel


class G2PPronouncer:
    """Each word's best pronunciation by the package's own search, in batches.

    Args:
        generator: a loaded G2P package.
        batch_size: words decoded together.
    """

    def __init__(self, generator: Generator, batch_size: int = 64):
        self.generator, self.batch_size = generator, batch_size

    @property
    def directory(self) -> Path:
        return self.generator.package.path

    @property
    def letters(self) -> frozenset[str]:
        """The characters the model can spell a word with."""
        return frozenset(self.generator.package.tokenizer.source.symbols) - {SPACE}

    def __call__(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        results = self.generator.generate(list(words), self.batch_size)
        refused = next((r.error for r in results if r.error), None)
        if refused:
            raise ValueError(f"{self.generator.package.path}: {refused}")
        return [tuple(r.outputs[0].split()) for r in results]


def load_pronouncer(directory: str | Path) -> G2PPronouncer:
    """The pronouncer of a text2text package (a PackageError for a package of another task)."""
    task, _ = read_package_config(directory)
    if task != "text2text":
        raise PackageError(
            f"{directory}: a package for {task}, not text2text: only a G2P package pronounces words"
        )
    return G2PPronouncer(Generator(load_model_package_with(directory, lambda e: Text2TextModel(e.model))))


def bind_pronouncer(tokenizer: Tokenizer) -> None:
    """Give a ``g2p`` tokenizer the G2P model it carries, so it can pronounce new words (other
    tokenizers need nothing)."""
    if isinstance(tokenizer, PronunciationTokenizer) and tokenizer.pronounce is None and tokenizer.g2p_dir:
        tokenizer.pronounce = load_pronouncer(tokenizer.g2p_dir)
