"""Sentence log-probabilities and perplexity with a loaded language-model package (plain PyTorch).

A sentence ``y`` is scored as ``log P(y EOS | SOS)``, its text normalized and tokenized by the package's
tokenizer (the ASR model's, when the LM shares it). Perplexity is ``exp(-sum log P / tokens)`` over the
predicted tokens, EOS included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from seq2seq.core.package import ModelPackage, PackageError
from seq2seq.core.text import PAD_ID


class LanguageModelScorer:
    """Scores sentences with an LM package; ``seq2seq.load_package`` returns one for LM packages.

    Args:
        package: a loaded LM model package.
    """

    def __init__(self, package: ModelPackage):
        if package.task != "lm":
            raise PackageError(
                f"{package.path}: {package.task} package is not a language model; use an LM package"
            )
        self.package = package

    @property
    def model(self) -> torch.nn.Module:
        return self.package.model

    @property
    def tokenizer(self):
        return self.package.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_log_probs(self, sentences: Sequence[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Per sentence, the log-probabilities (float32, on the CPU) of its tokens and then EOS."""
        encoded = [self.tokenizer.encode(s) for s in sentences]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths together
        results: list[torch.Tensor | None] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            for index, scores in zip(chosen, self._score([encoded[i] for i in chosen])):
                results[index] = scores
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _score(self, batch: list[list[int]]) -> list[torch.Tensor]:
        lengths = torch.tensor([len(ids) for ids in batch])
        tokens = torch.full((len(batch), max(1, int(lengths.max()))), PAD_ID, dtype=torch.long)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        per_token = self.model.sentence_log_probs(tokens.to(self.device), lengths.to(self.device)).cpu()
        return [per_token[row, : n + 1] for row, n in enumerate(lengths.tolist())]

    def log_prob(self, sentences: Sequence[str], batch_size: int = 64) -> list[float]:
        """Natural-log probability ``log P(y EOS | SOS)`` of each sentence (an empty one: of EOS alone)."""
        return [float(scores.sum()) for scores in self.token_log_probs(sentences, batch_size)]

    def perplexity(self, sentences: Sequence[str], batch_size: int = 64) -> tuple[float, int, list[str]]:
        """Perplexity over ``sentences``.

        Returns:
            perplexity: ``exp`` of the mean negative log-probability per predicted token (EOS included).
            tokens: how many tokens were predicted.
            problems: one line per sentence left out (empty after normalization) or holding characters
                the tokenizer cannot represent (scored as UNK), e.g. ``"sentence 3: empty (left out)"``.
        """
        problems = self.problems(sentences)
        kept = [sentence for sentence in sentences if self.tokenizer.encode(sentence)]
        scores = self.token_log_probs(kept, batch_size)
        tokens = sum(len(s) for s in scores)
        if not tokens:
            raise ValueError("no sentence to score: every sentence is empty after normalization")
        return math.exp(-sum(float(s.sum()) for s in scores) / tokens), tokens, problems

    def problems(self, sentences: Sequence[str]) -> list[str]:
        """What :meth:`perplexity` reports about ``sentences`` (numbered from 1)."""
        problems = []
        for number, sentence in enumerate(sentences, start=1):
            if not self.tokenizer.encode(sentence):
                problems.append(f"sentence {number}: empty after normalization (left out)")
            elif unknown := self.tokenizer.unknown_characters(sentence):
                shown = ", ".join(repr(c) for c in sorted(unknown))
                problems.append(
                    f"sentence {number}: characters outside the vocabulary ({shown}) scored as UNK"
                )
        return problems
