"""Text for language models: plain text files (one sentence a line) or JSON Lines manifests' ``text``.

Reading never stops at a bad line: each one becomes a ``FILE:LINE: reason`` problem and the rest is used.
A file is a manifest when its name ends in ``.jsonl`` or ``.json``; anything else is plain text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from seq2seq.core.text import PAD_ID, Tokenizer
from seq2seq.data.manifest import decode_line

MANIFEST_SUFFIXES = (".jsonl", ".json")


def _manifest_text(line: str) -> str:
    """The ``text`` of one manifest line; ValueError with a short reason otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ValueError("no 'text' string")
    return record["text"]


def read_sentences(path: str | Path) -> tuple[list[str], list[str]]:
    """Every non-empty sentence of a text file or manifest, in order.

    Returns:
        sentences: the sentences (stripped; blank lines skipped).
        problems: one line per unreadable line, e.g. ``"lm.txt:3: not UTF-8 (byte 0xff at column 7)"``.

    Raises:
        FileNotFoundError: the file itself does not exist.
    """
    path = Path(path)
    manifest = path.suffix.lower() in MANIFEST_SUFFIXES
    sentences: list[str] = []
    problems: list[str] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                line = decode_line(raw)
                sentence = (_manifest_text(line) if manifest else line).strip()
            except ValueError as error:
                problems.append(f"{path}:{number}: {error}")
                continue
            if sentence:
                sentences.append(sentence)
    return sentences, problems


@dataclass
class TextBatch:
    """Padded token ids (B, U) with PAD, their lengths (B,), and the sentences' indices."""

    tokens: torch.Tensor
    token_lengths: torch.Tensor
    ids: list[int]


class TextDataset(Dataset):
    """Sentences as token ids (encoded once, up front); ``num_frames`` are the lengths the bucketing
    sampler batches by (tokens + 1: the model sees ``SOS y`` and predicts ``y EOS``).

    Sentences that encode to nothing (empty after normalization) are left out and counted in ``empty``;
    with ``max_tokens``, so are longer ones, counted in ``too_long``.
    """

    def __init__(self, sentences: Sequence[str], tokenizer: Tokenizer, max_tokens: int | None = None) -> None:
        encoded = [tokenizer.encode(s) for s in sentences]
        self.empty = sum(not ids for ids in encoded)
        fits = [ids for ids in encoded if ids and (max_tokens is None or len(ids) <= max_tokens)]
        self.too_long = len(encoded) - self.empty - len(fits)
        self.tokens = [torch.tensor(ids, dtype=torch.long) for ids in fits]
        self.num_frames = [len(t) + 1 for t in self.tokens]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[int, torch.Tensor]:
        index = index[0] if isinstance(index, tuple) else index  # (index, epoch) from the train sampler
        return index, self.tokens[index]


def collate_text(items: list[tuple[int, torch.Tensor]]) -> TextBatch:
    ids, tokens = zip(*items)
    lengths = torch.tensor([len(t) for t in tokens])
    return TextBatch(pad_sequence(list(tokens), batch_first=True, padding_value=PAD_ID), lengths, list(ids))
