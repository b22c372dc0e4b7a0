"""Scorers that beam search combines: the attention decoder and the CTC prefix score.

A scorer maps the hypotheses so far to log-probabilities of their next token (ESPnet's scorer
interface, smaller). Beam search owns the hypotheses; a scorer owns an opaque state with one row per
hypothesis, and is told which rows survive and which token each one appended.
"""

from __future__ import annotations

import math
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

    Each hypothesis keeps its prefix arrays only on a window of ``W`` frames that starts at
    ``start``; with no window, ``W = T`` and every window starts at frame 0.

    Attributes:
        log_probs: (B, V, T) per-utterance CTC log-probs (float32), time last so that gathering
            candidates copies contiguous rows; frames past an utterance's end hold 0.
        blank_cumsum: (B, T + 1) running sum of the blank log-probs at t = -1 .. T-1 (column 0 is 0).
        next_speech: (B, T + 1) the first frame at or after t that is not a pause (T if none).
        lengths: (B,) encoder frames per utterance.
        utterance: (N,) utterance of each hypothesis row.
        start: (N,) first frame of each row's window.
        r: (N, 2, W + 1) log r^n (prefix ends in its last symbol) and log r^b (ends in blank) at
            t = start - 1 .. start + W - 1; column 0 is the frame before the window.
        last: (N,) last symbol of each prefix (-1 when empty).
        psi: (N,) log prefix probability of each hypothesis.
    """

    log_probs: torch.Tensor
    blank_cumsum: torch.Tensor
    next_speech: torch.Tensor
    lengths: torch.Tensor
    utterance: torch.Tensor
    start: torch.Tensor
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

    Windowing (ESPnet's ``margin``): summing over all ``T`` frames at each of the ~``T`` steps makes
    decoding quadratic in duration. With ``window = M``, a hypothesis reads only ``2M`` frames around
    the point its alignment has reached: the first frame after the prefix's most likely end (the
    argmax of ``phi(h)``) that is not a pause (blank probability above 1/2), so that the token after a
    long pause is still in reach.
    Outside its window a prefix is taken to be followed by blanks only. ESPnet centres the window on
    the attention peak instead; the CTC forward mass needs no attention weights and serves CTC-only
    search too.

    Args:
        ctc_log_probs: maps memory (B, S, D) to CTC log-probs (B, S, V), e.g. ``model.ctc_log_probs``.
        window: frames read on each side of the alignment point; 0 reads every frame.
    """

    partial = True
    PAUSE_BLANK = math.log(0.5)  # frames whose blank log-probability is above this are a pause

    def __init__(self, ctc_log_probs: Callable[[torch.Tensor], torch.Tensor], window: int = 0):
        self.ctc_log_probs = ctc_log_probs
        self.window = window

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> CTCState:
        log_probs = self.ctc_log_probs(memory).float()
        b, t, _ = log_probs.shape
        invalid = ~lengths_to_mask(memory_lengths, t)
        # (B, V, T), float32: the whole vocabulary is kept, only gathered rows go to float64.
        log_probs = log_probs.transpose(1, 2).clamp(min=_LOG_ZERO).masked_fill(invalid[:, None], 0.0)
        blank_cumsum = torch.cat(
            [log_probs.new_zeros(b, 1).double(), log_probs[:, BLANK_ID].double().cumsum(-1)], 1
        )
        device = log_probs.device
        width = t if self.window <= 0 else min(2 * self.window, t)
        frame = torch.arange(t + 1, device=device).expand(b, t + 1)
        speech = torch.cat([log_probs[:, BLANK_ID] < self.PAUSE_BLANK, torch.ones_like(invalid[:, :1])], 1)
        next_speech = torch.where(speech, frame, t).flip(-1).cummin(-1).values.flip(-1)
        state = CTCState(
            log_probs=log_probs.contiguous(),
            blank_cumsum=blank_cumsum,
            next_speech=next_speech,
            lengths=memory_lengths,
            utterance=torch.arange(b, device=device),
            start=torch.zeros(b, dtype=torch.long, device=device),
            r=blank_cumsum.new_full((b, 2, width + 1), float("-inf")),
            last=torch.full((b,), -1, dtype=torch.long, device=device),
            psi=blank_cumsum.new_zeros(b),  # log 1: every sequence starts with the empty prefix
        )
        # The empty prefix: probability 1 before the first frame, then blanks only.
        empty = blank_cumsum.new_full((b, 2, 1), float("-inf"))
        empty[:, 1, 0] = 0.0
        state.start, state.r = self._window(state, state.start, empty, width)
        return state

    def score(self, tokens, state: CTCState, candidates=None):
        """candidates: (N, K), or None for all V -> (N, K) float64 increments of log psi.

        The state is returned unchanged: prefix arrays are only computed for the extensions that
        :meth:`select_state` keeps, not for all ``N × K`` candidates.
        """
        n, v = state.utterance.shape[0], state.log_probs.shape[1]
        rows = torch.arange(n, device=state.r.device)
        if candidates is None:
            candidates = torch.arange(v, device=state.r.device).expand(n, v)
        psi = self._prefix_log_prob(state, rows, candidates)
        lengths = state.lengths.index_select(0, state.utterance)
        final = self._total_at(state, rows, lengths - 1)[:, None]  # (N, 1)
        psi = torch.where(candidates == EOS_ID, final, psi)
        psi = psi.masked_fill(candidates == BLANK_ID, float("-inf"))
        return psi - state.psi[:, None], state

    def select_state(self, state: CTCState, indices, tokens=None) -> CTCState:
        if tokens is None:
            start, r, last, psi = (
                state.start.index_select(0, indices),
                state.r.index_select(0, indices),
                state.last.index_select(0, indices),
                state.psi.index_select(0, indices),
            )
        else:
            psi = self._prefix_log_prob(state, indices, tokens[:, None])[:, 0]
            start, r = self._extend(state, indices, tokens)
            last = tokens
        state.utterance = state.utterance.index_select(0, indices)
        state.start, state.r, state.last, state.psi = start, r, last, psi
        return state

    @staticmethod
    def _frames(state: CTCState, rows: torch.Tensor):
        """Frames of the windows of ``rows`` (N,) -> utterance (N,), frames (N, W) clamped into the
        utterance's tensor, valid (N, W): inside the window and before the utterance's end."""
        utterance = state.utterance.index_select(0, rows)
        frames = state.start.index_select(0, rows)[:, None] + torch.arange(
            state.r.shape[2] - 1, device=rows.device
        )
        valid = frames < state.lengths.index_select(0, utterance)[:, None]
        return utterance, frames.clamp(max=state.log_probs.shape[2] - 1), valid

    @staticmethod
    def _phi(state: CTCState, rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """log phi_{t-1}(g, c) over the window of each parent: rows (N,), candidates (N, K) -> (N, K, W)."""
        r = state.r.index_select(0, rows)[:, :, :-1]
        repeat = (candidates == state.last.index_select(0, rows)[:, None])[..., None]
        return torch.where(repeat, r[:, None, 1], r.logsumexp(1)[:, None])

    def _prefix_log_prob(self, state: CTCState, rows, candidates) -> torch.Tensor:
        """log psi(g + c) for parents ``rows`` (N,) and candidates (N, K) -> (N, K)."""
        utterance, frames, valid = self._frames(state, rows)
        if self.window <= 0:  # every window is the whole utterance: gather whole rows
            x = state.log_probs[utterance[:, None], candidates].double()  # (N, K, T)
        else:
            x = state.log_probs[utterance[:, None, None], candidates[..., None], frames[:, None]].double()
        terms = (self._phi(state, rows, candidates) + x).masked_fill(~valid[:, None], float("-inf"))
        return terms.logsumexp(-1)

    def _extend(self, state: CTCState, rows: torch.Tensor, tokens: torch.Tensor):
        """Window start (N,) and r^n, r^b (N, 2, W + 1) of ``g + c`` for parents ``rows`` (N,) and
        symbols ``tokens`` (N,)."""
        utterance, frames, _ = self._frames(state, rows)
        x = state.log_probs[utterance[:, None], tokens[:, None], frames].double()  # (N, W)
        blank = state.log_probs[utterance[:, None], BLANK_ID, frames].double()
        phi = self._phi(state, rows, tokens[:, None])[:, 0]
        r_n = _linear_recurrence(x, phi + x)
        r_n_prev = torch.cat([torch.full_like(r_n[:, :1], float("-inf")), r_n[:, :-1]], dim=1)
        r_b = _linear_recurrence(blank, r_n_prev + blank)
        start = torch.full_like(r_n[:, :1], float("-inf"))  # no mass before the parent's window
        r = torch.stack([torch.cat([start, r_n], 1), torch.cat([start, r_b], 1)], dim=1)
        if self.window <= 0:
            return state.start.index_select(0, rows), r
        sub = CTCState(**{**vars(state), "utterance": utterance, "start": state.start.index_select(0, rows)})
        return self._window(sub, sub.start, r, r.shape[2] - 1)

    def _window(self, state: CTCState, start: torch.Tensor, r: torch.Tensor, width: int):
        """Move each row's window to its alignment point: ``r`` (N, 2, C) holds r^n, r^b at frames
        ``start - 1 ..``; beyond them the prefix continues with blanks. -> new start (N,), r (N, 2, W + 1).
        """
        n, device = r.shape[0], r.device
        lengths = state.lengths.index_select(0, state.utterance)
        if self.window <= 0:
            new_start = torch.zeros_like(start)
        else:  # the frame after the prefix's most likely end, past any pause (confident blanks)
            peak = start - 1 + r.logsumexp(1).argmax(1)
            speech = state.next_speech.index_select(0, state.utterance)
            anchor = speech.gather(1, (peak + 1)[:, None])[:, 0].minimum(lengths - 1)
            new_start = (anchor - self.window).clamp(min=0).minimum((lengths - width).clamp(min=0))
        frames = new_start[:, None] - 1 + torch.arange(width + 1, device=device)  # (N, W + 1)
        offset = frames - (start[:, None] - 1)
        inside = (offset >= 0) & (offset < r.shape[2])
        known = r.gather(2, offset.clamp(0, r.shape[2] - 1)[:, None].expand(n, 2, -1))
        end = start - 1 + r.shape[2] - 1  # last frame r covers
        blanks = self._blank_log_prob(state, end[:, None], frames)
        after = torch.stack(
            [torch.full_like(blanks, float("-inf")), r[:, :, -1].logsumexp(1)[:, None] + blanks], 1
        )
        out = torch.where(
            inside[:, None], known, torch.where((offset >= r.shape[2])[:, None], after, float("-inf"))
        )
        return new_start, out

    @staticmethod
    def _blank_log_prob(state: CTCState, after: torch.Tensor, until: torch.Tensor) -> torch.Tensor:
        """log prod of blank probabilities over frames ``after + 1 .. until`` (0 when empty)."""
        cumsum = state.blank_cumsum.index_select(0, state.utterance)
        t1 = state.blank_cumsum.shape[1] - 1
        hi = cumsum.gather(1, (until + 1).clamp(0, t1))
        lo = cumsum.gather(1, (after + 1).clamp(0, t1).expand_as(until))
        return (hi - lo).clamp(max=0.0) * (until > after)

    def _total_at(self, state: CTCState, rows: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """log (r^n + r^b) of ``rows`` (N,) at ``frame`` (N,): read in the window, continued with blanks
        after it, -inf before it."""
        r = state.r.index_select(0, rows)
        start = state.start.index_select(0, rows)
        offset = frame - (start - 1)
        width = r.shape[2]
        inside = r.gather(2, offset.clamp(0, width - 1).view(-1, 1, 1).expand(-1, 2, 1)).logsumexp(1)[:, 0]
        sub = CTCState(**{**vars(state), "utterance": state.utterance.index_select(0, rows)})
        end = start - 1 + width - 1
        after = r[:, :, -1].logsumexp(1) + self._blank_log_prob(sub, end[:, None], frame[:, None])[:, 0]
        return torch.where(offset < 0, float("-inf"), torch.where(offset < width, inside, after))


def _linear_recurrence(log_a, log_b, log_a_cumsum=None) -> torch.Tensor:
    """Solve ``y_t = a_t y_{t-1} + b_t`` with ``y_{-1} = 0`` in the log domain over the last axis.

    ``y_t = sum_{s<=t} b_s prod_{s<u<=t} a_u = A_t sum_{s<=t} b_s / A_s`` with ``A_t = prod_{u<=t} a_u``.
    """
    cum = log_a.cumsum(-1) if log_a_cumsum is None else log_a_cumsum
    return cum + torch.logcumsumexp(log_b - cum, dim=-1)
