"""Text-to-text data: manifests of ``{"id", "text", "target", "references"}``, a dataset, a collate function.

One JSON object per line: ``text`` is the source (a word), ``target`` the reference the model is trained
towards, and ``references`` every acceptable output (all pronunciations of a word; ``target`` first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from seq2seq.core.config import ConfigError
from seq2seq.core.text import PAD_ID, TokenizerPair
from seq2seq.data.datasets import _Batch, _pad
from seq2seq.data.manifest import decode_line


@dataclass(frozen=True)
class TextPair:
    """One entry: a source text and its references (``target`` is the first)."""

    id: str
    text: str
    references: tuple[str, ...] = field(default_factory=tuple)

    @property
    def target(self) -> str:
        return self.references[0]

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "target": self.target, "references": list(self.references)}


def _parse(line: str) -> TextPair:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for name in ("text", "target"):
        if not isinstance(record.get(name), str) or not record[name].strip():
            raise ValueError(f"missing or empty field '{name}'")
    references = record.get("references", [record["target"]])
    if not isinstance(references, list) or not all(isinstance(r, str) and r.strip() for r in references):
        raise ValueError("'references' must be a list of non-empty strings")
    ordered = dict.fromkeys([record["target"], *references])  # target first, no repeats
    return TextPair(str(record.get("id") or record["text"]), record["text"], tuple(ordered))


def read_text_manifest(path: str | Path) -> tuple[list[TextPair], list[str]]:
    """Every valid line of a text-pair manifest, and one ``FILE:LINE: reason`` per rejected line.

    Raises:
        FileNotFoundError: the manifest itself does not exist.
    """
    path = Path(path)
    pairs: list[TextPair] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                pair = _parse(decode_line(raw))
            except ValueError as error:
                problems.append(f"{path}:{number}: {error}")
                continue
            if pair.id in seen:
                problems.append(f"{path}:{number}: duplicate id '{pair.id}' (first on line {seen[pair.id]})")
                continue
            seen[pair.id] = number
            pairs.append(pair)
    return pairs, problems


def read_pronunciations(manifests: Iterable[str | Path]) -> dict[str, tuple[str, ...]]:
    """Word -> its first pronunciation (``target``), from text-pair manifests such as ``prepare cmudict``
    writes (the first manifest naming a word wins).

    Raises:
        ConfigError: a manifest is missing or holds a line that is not a text pair (``FILE:LINE: reason``).
    """
    dictionary: dict[str, tuple[str, ...]] = {}
    for manifest in manifests:
        try:
            pairs, problems = read_text_manifest(manifest)
        except FileNotFoundError:
            raise ConfigError(f"{manifest}: pronunciation manifest not found") from None
        if problems:
            raise ConfigError(problems[0])
        for pair in pairs:
            dictionary.setdefault(pair.text, tuple(pair.target.split()))
    return dictionary


def write_text_manifest(path: str | Path, pairs: Iterable[TextPair]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(pair.to_record(), ensure_ascii=False) + "\n")
    return path


@dataclass
class TextBatch(_Batch):
    """A padded text-to-text batch.

    Attributes:
        ids: entry ids, length B.
        sources: (B, S) source ids padded with ``PAD_ID``.
        source_lengths: (B,) valid source tokens.
        tokens: (B, U) target ids padded with ``PAD_ID``, without SOS/EOS.
        token_lengths: (B,) valid target tokens.
    """

    ids: list[str]
    sources: torch.Tensor
    source_lengths: torch.Tensor
    tokens: torch.Tensor
    token_lengths: torch.Tensor


class TextPairDataset(Dataset):
    """Tokenised (source, target) examples; with ``all_references`` one example per reference.

    ``num_frames`` (the bucketing length of each example) is the longer of source and target + 1.
    """

    def __init__(self, pairs: list[TextPair], tokenizer: TokenizerPair, all_references: bool = False):
        self.examples: list[tuple[str, list[int], list[int]]] = []
        for pair in pairs:
            source = tokenizer.source.encode(pair.text)
            for i, reference in enumerate(pair.references if all_references else pair.references[:1]):
                ident = pair.id if i == 0 else f"{pair.id}#{i + 1}"
                self.examples.append((ident, source, tokenizer.target.encode(reference)))
        self.num_frames = [max(len(s), len(t) + 1) for _, s, t in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key  # (index, epoch) from the training sampler
        ident, source, target = self.examples[index]
        return {
            "id": ident,
            "sources": torch.tensor(source, dtype=torch.long),
            "tokens": torch.tensor(target, dtype=torch.long),
        }


def collate_text_pairs(items: list[dict[str, Any]]) -> TextBatch:
    """Pad ``TextPairDataset`` items into a ``TextBatch``."""
    sources, source_lengths = _pad([item["sources"] for item in items], PAD_ID)
    tokens, token_lengths = _pad([item["tokens"] for item in items], PAD_ID)
    return TextBatch([item["id"] for item in items], sources, source_lengths, tokens, token_lengths)
