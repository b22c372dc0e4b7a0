"""A language model as a beam-search scorer (shallow fusion): next-token log-probabilities of the whole
vocabulary, fed one token per step through the LM's explicit KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class LMState:
    """The LM's per-layer key/value cache, one row per hypothesis (the LM reads no audio)."""

    cache: Any


class LMScorer:
    """A full scorer (``partial = False``) over a :class:`~seq2seq.models.lm.LanguageModel`.

    Each call feeds only the newest token of every row; :meth:`select_state` reorders the cache rows
    as beams are kept, expanded and dropped. Ids no sentence holds (BLANK, PAD, SOS) score ``-inf``.

    Args:
        model: ``new_cache()`` and ``log_probs(tokens, cache=...)`` (B, U, V) log-probabilities.
    """

    partial = False

    def __init__(self, model):
        self.model = model

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> LMState:
        return LMState(self.model.new_cache())

    def score(self, tokens, state: LMState, candidates=None):
        """tokens: (N, U) SOS first -> (N, V) float32 log P_lm(next | tokens), or (N, K) at ``candidates``."""
        scores = self.model.log_probs(tokens[:, state.cache.length :], cache=state.cache)[:, -1]
        return (scores if candidates is None else scores.gather(1, candidates)), state

    def select_state(self, state: LMState, indices, tokens=None) -> LMState:
        state.cache.select(indices)
        return state
