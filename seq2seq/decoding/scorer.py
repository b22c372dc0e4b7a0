"""Scorers that beam search combines: the attention decoder and the CTC prefix score.

A scorer maps the hypotheses so far to log-probabilities of their next token (ESPnet's scorer
interface, smaller). Beam search owns the hypotheses; a scorer owns an opaque state with one row per
hypothesis, and is told which rows survive and which token each one appended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from seq2seq.core.text import BLANK_ID, EOS_ID
from seq2seq.nn.masking import lengths_to_mask

# CTC log-probabilities are clamped here so that impossible symbols stay finite: the closed-form
# recursions below subtract cumulative sums, and -inf - -inf would be NaN.
_LOG_ZERO = -1e4


class Scorer(Protocol):
    """Next-token scores of a batch of hypotheses, ``N`` rows (utterances × beam).

    Attributes:
        partial: True when scoring is only affordable for a few candidates per hypothesis (CTC);
            False when the whole vocabulary comes at once (the decoder's softmax).
    """

    partial: bool

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Any:
        """State for one empty hypothesis (SOS only) per utterance: memory (B, S, D), lengths (B,)."""

    def score(
        self, tokens: torch.Tensor, state: Any, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        """Log-probability increments of appending each candidate.

        Args:
            tokens: (N, U) hypotheses so far, SOS first.
            state: this scorer's state for those rows.
            candidates: (N, K) token ids to score, or None for the whole vocabulary.

        Returns:
            scores (N, K) or (N, V), and the state after reading ``tokens``.
        """

    def select_state(self, state: Any, indices: torch.Tensor, tokens: torch.Tensor | None = None) -> Any:
        """Keep rows ``indices`` (N',), each extended by ``tokens`` (N',); None only drops/reorders rows."""


@dataclass
class AttentionState:
    """Decoder cache plus the memory it attends to.

    The memory (and the cross-attention keys/values in the cache) has one row per live utterance,
    ``groups`` (G,) their ids; the N hypothesis rows are G runs of equal length, ``utterance`` (N,)
    naming the run of each row. Beams share their utterance's memory instead of copying it.
    """

    cache: Any
    memory: torch.Tensor
    memory_lengths: torch.Tensor
    utterance: torch.Tensor
    groups: torch.Tensor


class AttentionScorer:
    """The attention decoder, run incrementally: each call feeds only the newest token to the KV cache."""

    partial = False

    def __init__(self, model):
        self.model = model

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> AttentionState:
        utterance = torch.arange(memory.shape[0], device=memory.device)
        return AttentionState(self.model.new_cache(), memory, memory_lengths, utterance, utterance)

    def score(self, tokens, state: AttentionState, candidates=None):
        """tokens: (N, U) -> (N, V) float32 log-probs (or (N, K) gathered at ``candidates``).

        Only ``tokens[:, -1]`` is fed: the cache already holds the earlier positions.
        """
        logits = self.model.decode(tokens[:, -1:], state.memory, state.memory_lengths, state.cache)
        scores = logits[:, -1].float().log_softmax(-1)
        return (scores if candidates is None else scores.gather(1, candidates)), state

    def select_state(self, state: AttentionState, indices, tokens=None) -> AttentionState:
        state.utterance = state.utterance.index_select(0, indices)
        for kv in state.cache.self_attn:
            kv.select(indices)
        # Cross-attention keys/values depend only on the utterance: they change only when utterances
        # leave (finished), never when beams are reordered or expanded.
        groups = state.utterance.unique_consecutive()
        if not torch.equal(groups, state.groups):
            kept = torch.searchsorted(state.groups, groups)
            for kv in state.cache.cross_attn:
                kv.select(kept)
            state.memory = state.memory.index_select(0, kept)
            state.memory_lengths = state.memory_lengths.index_select(0, kept)
            state.groups = groups
        return state


@dataclass
class CTCState:
    """CTC prefix-score state (log domain, float64).

    Attributes:
        log_probs: (B, V, T) per-utterance CTC log-probs (float32), time last so that gathering
            candidates copies contiguous rows; frames past an utterance's end hold 0.
        blank: (B, T) blank log-probs; ``blank_cumsum`` their running sum over time.
        lengths: (B,) encoder frames per utterance.
        utterance: (N,) utterance of each hypothesis row.
        r: (N, 2, T + 1) log r^n (prefix ends in its last symbol) and log r^b (ends in blank) at
            t = -1 .. T-1; column 0 is the virtual frame before the first.
        last: (N,) last symbol of each prefix (-1 when empty).
        psi: (N,) log prefix probability of each hypothesis.
    """

    log_probs: torch.Tensor
    blank: torch.Tensor
    blank_cumsum: torch.Tensor
    lengths: torch.Tensor
    utterance: torch.Tensor
    r: torch.Tensor
    last: torch.Tensor
    psi: torch.Tensor


class CTCPrefixScorer:
    """CTC prefix scores (Watanabe et al., 2017; ESPnet's ``CTCPrefixScoreTH``), vectorised over
    hypotheses, candidates and time.

    The prefix probability of ``h = g + c`` is ``psi(h) = sum_t phi_{t-1}(g, c) p_t(c)``, where
    ``phi_t = r^n_t(g) + r^b_t(g)`` (only ``r^b_t(g)`` when ``c`` repeats the last symbol of ``g``).
    The EOS score is the probability of the whole sequence, ``r^n_{T-1}(g) + r^b_{T-1}(g)``. Scores
    returned are increments ``log psi(h) - log psi(g)``, so they sum to the full CTC log-likelihood.

    The time recursions ``r^n_t(h) = (r^n_{t-1}(h) + phi_{t-1}) p_t(c)`` and
    ``r^b_t(h) = (r^n_{t-1}(h) + r^b_{t-1}(h)) p_t(blank)`` are first-order linear recurrences, solved
    in closed form with a cumulative sum and ``logcumsumexp`` instead of a Python loop over frames.
    Subtracting cumulative sums loses absolute precision ~ eps × |sum log p|, hence float64.

    Args:
        ctc_log_probs: maps memory (B, S, D) to CTC log-probs (B, S, V), e.g. ``model.ctc_log_probs``.
    """

    partial = True

    def __init__(self, ctc_log_probs: Callable[[torch.Tensor], torch.Tensor]):
        self.ctc_log_probs = ctc_log_probs

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> CTCState:
        log_probs = self.ctc_log_probs(memory).float()
        b, t, _ = log_probs.shape
        invalid = ~lengths_to_mask(memory_lengths, t)
        # (B, V, T), float32: the whole vocabulary is kept, only gathered rows go to float64.
        log_probs = log_probs.transpose(1, 2).clamp(min=_LOG_ZERO).masked_fill(invalid[:, None], 0.0)
        blank = log_probs[:, BLANK_ID].double()
        blank_cumsum = blank.cumsum(-1)
        r = blank.new_full((b, 2, t + 1), float("-inf"))
        r[:, 1, 0] = 0.0  # the empty prefix: probability 1 before the first frame...
        r[:, 1, 1:] = blank_cumsum  # ...then blanks only
        return CTCState(
            log_probs=log_probs.contiguous(),
            blank=blank,
            blank_cumsum=blank_cumsum,
            lengths=memory_lengths,
            utterance=torch.arange(b, device=log_probs.device),
            r=r,
            last=torch.full((b,), -1, dtype=torch.long, device=log_probs.device),
            psi=blank.new_zeros(b),  # log 1: every sequence starts with the empty prefix
        )

    def score(self, tokens, state: CTCState, candidates=None):
        """candidates: (N, K), or None for all V -> (N, K) float64 increments of log psi.

        The state is returned unchanged: prefix arrays are only computed for the extensions that
        :meth:`select_state` keeps, not for all ``N × K`` candidates.
        """
        n, v = state.utterance.shape[0], state.log_probs.shape[1]
        if candidates is None:
            candidates = torch.arange(v, device=state.r.device).expand(n, v)
        psi = self._prefix_log_prob(state, torch.arange(n, device=state.r.device)[:, None], candidates)
        lengths = state.lengths.index_select(0, state.utterance)
        final = state.r.gather(2, lengths.view(n, 1, 1).expand(n, 2, 1)).logsumexp(1)  # (N, 1)
        psi = torch.where(candidates == EOS_ID, final, psi)
        psi = psi.masked_fill(candidates == BLANK_ID, float("-inf"))
        return psi - state.psi[:, None], state

    def select_state(self, state: CTCState, indices, tokens=None) -> CTCState:
        if tokens is None:
            r, last, psi = (
                state.r.index_select(0, indices),
                state.last.index_select(0, indices),
                state.psi.index_select(0, indices),
            )
        else:
            r, last = self._extend(state, indices, tokens), tokens
            psi = self._prefix_log_prob(state, indices[:, None], tokens[:, None])[:, 0]
        state.utterance = state.utterance.index_select(0, indices)
        state.r, state.last, state.psi = r, last, psi
        return state

    @staticmethod
    def _phi(state: CTCState, rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """log phi_{t-1}(g, c) for t = 0 .. T-1: rows (N, 1) parents, candidates (N, K) -> (N, K, T)."""
        r = state.r.index_select(0, rows[:, 0])[:, :, :-1]
        repeat = (candidates == state.last.index_select(0, rows[:, 0])[:, None])[..., None]
        return torch.where(repeat, r[:, None, 1], r.logsumexp(1)[:, None])

    def _prefix_log_prob(self, state: CTCState, rows, candidates) -> torch.Tensor:
        """log psi(g + c) for parents ``rows`` (N, 1) and candidates (N, K) -> (N, K)."""
        utterance = state.utterance.index_select(0, rows[:, 0])
        x = state.log_probs[utterance[:, None], candidates].double()  # (N, K, T)
        t = torch.arange(x.shape[-1], device=x.device)
        valid = t < state.lengths.index_select(0, utterance)[:, None, None]
        terms = (self._phi(state, rows, candidates) + x).masked_fill(~valid, float("-inf"))
        return terms.logsumexp(-1)

    def _extend(self, state: CTCState, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """r^n, r^b of ``g + c`` for parents ``rows`` (N,) and symbols ``tokens`` (N,) -> (N, 2, T + 1)."""
        utterance = state.utterance.index_select(0, rows)
        x = state.log_probs[utterance, tokens].double()  # (N, T)
        phi = self._phi(state, rows[:, None], tokens[:, None])[:, 0]
        r_n = _linear_recurrence(x, phi + x)
        r_n_prev = torch.cat([torch.full_like(r_n[:, :1], float("-inf")), r_n[:, :-1]], dim=1)
        blank = state.blank.index_select(0, utterance)
        r_b = _linear_recurrence(blank, r_n_prev + blank, state.blank_cumsum.index_select(0, utterance))
        start = torch.full_like(r_n[:, :1], float("-inf"))  # a non-empty prefix has no mass at t = -1
        return torch.stack([torch.cat([start, r_n], 1), torch.cat([start, r_b], 1)], dim=1)


def _linear_recurrence(log_a, log_b, log_a_cumsum=None) -> torch.Tensor:
    """Solve ``y_t = a_t y_{t-1} + b_t`` with ``y_{-1} = 0`` in the log domain over the last axis.

    ``y_t = sum_{s<=t} b_s prod_{s<u<=t} a_u = A_t sum_{s<=t} b_s / A_s`` with ``A_t = prod_{u<=t} a_u``.
    """
    cum = log_a.cumsum(-1) if log_a_cumsum is None else log_a_cumsum
    return cum + torch.logcumsumexp(log_b - cum, dim=-1)
