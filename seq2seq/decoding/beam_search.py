"""Batched beam search over a weighted sum of scorers (attention decoder, CTC prefix score, LM).

All running hypotheses of all utterances live in one ``(N, U)`` tensor, ``N = utterances × width``,
each utterance owning ``width`` consecutive rows. A step scores every row, keeps the best ``beam_size``
extensions per utterance, moves those that chose EOS to the utterance's ended list and marks their row
dead (score -inf); utterances that are finished leave the tensor, so later steps get cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from seq2seq.core.text import EOS_ID, SOS_ID
from seq2seq.decoding.config import DecodingConfig
from seq2seq.decoding.greedy import allowed_token_mask, greedy_search, max_lengths
from seq2seq.decoding.lexicon import LexiconScorer, LexiconTrie
from seq2seq.decoding.lm_scorer import LMScorer
from seq2seq.decoding.scorer import AttentionScorer, CTCPrefixScorer, Scorer

_NEG_INF = float("-inf")
# Removing rows copies every cached tensor (the decoder's cross-attention keys/values dominate: about
# one cross-attention pass over all rows), so finished utterances leave the batch only in groups.
# A third balanced the two on the benchmark (dropping at once: +7% decoding time).
DROP_FRACTION = 1 / 3


@dataclass(frozen=True)
class Hypothesis:
    """One ended hypothesis.

    Attributes:
        tokens: token ids without SOS/EOS.
        score: the ranking score (weighted sum, length penalty included; divided by ``len + 1`` when
            the config asks for length normalization).
        scores: per scorer, its unweighted log-probability of ``tokens + EOS`` (``attention``, ``ctc``,
            ``lm``, ``lexicon``: the scorers the search used).
    """

    tokens: list[int]
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def attention_score(self) -> float | None:
        """log P_att(tokens + EOS), or None when the decoder was not used."""
        return self.scores.get("attention")

    @property
    def ctc_score(self) -> float | None:
        """log P_ctc(tokens), or None when CTC was not used."""
        return self.scores.get("ctc")

    @property
    def lm_score(self) -> float | None:
        """log P_lm(tokens + EOS), or None when no language model was fused."""
        return self.scores.get("lm")


@dataclass
class _Running:
    """Hypotheses still being extended; every tensor has one row per hypothesis."""

    tokens: torch.Tensor  # (N, U) SOS first
    score: torch.Tensor  # (N,) float64 weighted total, -inf for dead rows
    partial: dict[str, torch.Tensor]  # scorer name -> (N,) float64 unweighted sum
    utterance: torch.Tensor  # (N,) index of the utterance in the input batch
    width: int  # rows per utterance
    states: dict[str, Any]
    allowed: torch.Tensor  # (V,) bool, ids that may be emitted
    never: torch.Tensor  # (V,) float, 0 where ``allowed``, -inf elsewhere
    emittable: int  # allowed.sum()
    max_len: torch.Tensor  # (B,) most tokens per input utterance
    min_len: torch.Tensor  # (B,) fewest tokens before EOS

    def select(self, rows: torch.Tensor, tokens: torch.Tensor | None, scorers: dict[str, Scorer]) -> None:
        self.tokens = self.tokens.index_select(0, rows)
        if tokens is not None:
            self.tokens = torch.cat([self.tokens, tokens[:, None]], dim=1)
        self.utterance = self.utterance.index_select(0, rows)
        self.states = {
            name: scorer.select_state(self.states[name], rows, tokens) for name, scorer in scorers.items()
        }


class BeamSearch:
    """Beam search over ``sum_i weight_i * scorer_i`` (ESPnet's batch beam search, smaller).

    Full scorers (``partial = False``) score the whole vocabulary; their weighted sum picks the
    ``config.pre_beam_size`` candidates per hypothesis that partial scorers (CTC) then score.

    Args:
        scorers: name -> scorer; each ended :class:`Hypothesis` carries every scorer's sum by name.
        weights: name -> weight.
        config: search settings.
    """

    def __init__(self, scorers: dict[str, Scorer], weights: dict[str, float], config: DecodingConfig):
        self.scorers, self.weights, self.config = scorers, weights, config
        self.full = [name for name, s in scorers.items() if not getattr(s, "partial", False)]

    def __call__(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, vocab_size: int
    ) -> list[list[Hypothesis]]:
        """memory: (B, S, D), memory_lengths: (B,) -> per utterance up to ``nbest`` hypotheses, best first."""
        batch, device = memory.shape[0], memory.device
        max_len = max_lengths(memory_lengths, self.config.max_length_ratio)
        if "ctc" in self.scorers:  # CTC emits at most one token per frame: a longer prefix is impossible
            max_len = max_len.minimum(memory_lengths.clamp(min=1))
        zeros = torch.zeros(batch, dtype=torch.float64, device=device)
        allowed = allowed_token_mask(vocab_size, device)
        run = _Running(
            tokens=torch.full((batch, 1), SOS_ID, dtype=torch.long, device=device),
            score=zeros,
            partial={name: zeros for name in self.scorers},
            utterance=torch.arange(batch, device=device),
            width=1,
            states={name: s.init_state(memory, memory_lengths) for name, s in self.scorers.items()},
            allowed=allowed,
            never=torch.zeros(vocab_size, device=device).masked_fill(~allowed, _NEG_INF),
            emittable=int(allowed.sum()),
            max_len=max_len,
            min_len=(memory_lengths.double() * self.config.min_length_ratio).long().minimum(max_len),
        )
        ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
        for step in range(int(max_len.max()) + 1):
            self._step(run, step, ended)
            if run.tokens.shape[0] == 0:
                break
        return [sorted(hyps, key=lambda h: -h.score)[: self.config.nbest] for hyps in ended]

    def _step(self, run: _Running, step: int, ended: list[list[Hypothesis]]) -> None:
        """Extend every running hypothesis by one token, collect endings, drop finished utterances."""
        candidates, increments, total = self._score(run, step)
        utterances, k = run.score.shape[0] // run.width, candidates.shape[1]
        keep = min(self.config.beam_size, run.width * k)
        score, flat = total.view(utterances, run.width * k).topk(keep, dim=1)
        rows = (torch.arange(utterances, device=flat.device)[:, None] * run.width + flat // k).flatten()
        column = (flat % k).flatten()
        tokens = candidates[rows, column]
        run.score = score.flatten()
        run.partial = {
            name: run.partial[name].index_select(0, rows) + inc[rows, column].double()
            for name, inc in increments.items()
        }
        self._collect_ended(run, rows, tokens, ended)
        run.select(rows, tokens, self.scorers)
        run.width = keep
        self._drop_finished(run, step, ended)

    def _score(self, run: _Running, step: int):
        """-> candidates (N, K), unweighted increments per scorer (N, K), weighted totals (N, K)."""
        mask = self._length_mask(run, step)  # (N, V) 0 or -inf
        full = {}
        for name in self.full:
            full[name], run.states[name] = self.scorers[name].score(run.tokens, run.states[name], None)
        if full:
            pre = mask + sum(self.weights[name] * full[name] for name in full)
            k = min(self.config.pre_beam_size, run.emittable)
            candidates = pre.topk(k, dim=1).indices
        else:  # no full scorer (CTC only): every emittable token is a candidate
            candidates = run.allowed.nonzero().squeeze(1).expand(mask.shape[0], -1)
        increments = {name: scores.gather(1, candidates) for name, scores in full.items()}
        for name, scorer in self.scorers.items():
            if name not in full:
                increments[name], run.states[name] = scorer.score(run.tokens, run.states[name], candidates)
        total = run.score[:, None] + mask.gather(1, candidates).double()
        for name, inc in increments.items():
            total = total + self.weights[name] * inc.double()
        total = total + self.config.length_penalty * (candidates != EOS_ID)
        return candidates, increments, total.nan_to_num(nan=_NEG_INF)

    def _length_mask(self, run: _Running, step: int) -> torch.Tensor:
        """(N, V): -inf for ids never emitted, EOS before the minimum length, all but EOS at the maximum.

        Most steps have neither: then it is a view of one (V,) row, not N × V values built per step.
        """
        n = run.tokens.shape[0]
        too_short = run.min_len.index_select(0, run.utterance) > step
        at_max = (run.max_len.index_select(0, run.utterance) <= step)[:, None]
        if not bool(too_short.any() or at_max.any()):
            return run.never.expand(n, -1)
        mask = run.never.repeat(n, 1)
        mask[:, EOS_ID] = mask[:, EOS_ID].masked_fill(too_short, _NEG_INF)
        not_eos = torch.arange(mask.shape[1], device=mask.device) != EOS_ID
        return mask.masked_fill(at_max & not_eos, _NEG_INF)

    def _collect_ended(self, run: _Running, rows, tokens, ended: list[list[Hypothesis]]) -> None:
        """Move the rows that chose EOS to ``ended`` and mark them dead."""
        finished = (tokens == EOS_ID) & run.score.isfinite()
        for i in finished.nonzero().squeeze(1).tolist():
            seq = run.tokens[rows[i], 1:].tolist()
            score = float(run.score[i])
            if self.config.length_normalization:
                score /= len(seq) + 1
            partial = {name: float(values[i]) for name, values in run.partial.items()}
            ended[int(run.utterance[rows[i]])].append(Hypothesis(seq, score, partial))
        run.score = run.score.masked_fill(tokens == EOS_ID, _NEG_INF)

    def _drop_finished(self, run: _Running, step: int, ended: list[list[Hypothesis]]) -> None:
        """Retire utterances with no live row, or that early stopping ends: their rows are marked dead at
        once, and they leave the running batch when they make up ``DROP_FRACTION`` of it.
        """
        best_running = run.score.view(-1, run.width).max(dim=1).values.tolist()
        utterances = run.utterance.view(-1, run.width)[:, 0].tolist()
        done = [
            best == _NEG_INF or self._stop_early(ended[u], best, step)
            for u, best in zip(utterances, best_running)
        ]
        if sum(done) < DROP_FRACTION * len(done):
            if any(done):
                done_rows = torch.tensor(done, device=run.score.device).repeat_interleave(run.width)
                run.score = run.score.masked_fill(done_rows, _NEG_INF)
            return
        keep = ~torch.tensor(done, device=run.score.device).repeat_interleave(run.width)
        rows = keep.nonzero().squeeze(1)
        run.score = run.score.index_select(0, rows)
        run.partial = {name: values.index_select(0, rows) for name, values in run.partial.items()}
        run.select(rows, None, self.scorers)

    def _stop_early(self, hyps: list[Hypothesis], best_running: float, step: int) -> bool:
        match self.config.early_stop:
            case "bound":
                scores = sorted((h.score for h in hyps), reverse=True)
                return len(scores) >= self.config.nbest and scores[self.config.nbest - 1] >= best_running
            case "espnet":
                return end_detect(hyps, step)
        return False


def end_detect(hyps: list[Hypothesis], length: int, recent: int = 3, margin: float = -10.0) -> bool:
    """ESPnet's ``end_detect``: True when, for each of the ``recent`` output lengths up to ``length``,
    some hypothesis ended there and the best of them scores more than ``-margin`` below the best ended
    one (lengths count tokens without SOS/EOS).
    """
    if not hyps:
        return False
    best = max(h.score for h in hyps)
    hopeless = 0
    for m in range(recent):
        same = [h.score for h in hyps if len(h.tokens) == length - m]
        hopeless += bool(same) and max(same) - best < margin
    return hopeless == recent


def build_scorers(
    model, config: DecodingConfig, lm=None, lexicon: LexiconTrie | None = None
) -> tuple[dict[str, Scorer], dict[str, float]]:
    """The attention decoder and the CTC prefix scorer with weights ``1 - ctc_weight`` and ``ctc_weight``,
    the language model ``lm`` (if given) with ``lm_weight`` and the word list ``lexicon`` (if given)
    with ``lexicon_weight``; a scorer with weight 0 is left out so that it costs nothing
    (``lm_weight = 0`` is exactly the search without the LM, ``lexicon_weight = 0`` without the list).
    """
    scorers: dict[str, Scorer] = {}
    weights = {
        "attention": 1.0 - config.ctc_weight,
        "ctc": config.ctc_weight,
        "lm": config.lm_weight,
        "lexicon": config.lexicon_weight,
    }
    if weights["attention"] > 0:
        scorers["attention"] = AttentionScorer(model)
    if weights["ctc"] > 0:
        scorers["ctc"] = CTCPrefixScorer(model.ctc_log_probs, config.ctc_window)
    if lm is not None and weights["lm"] > 0:
        scorers["lm"] = LMScorer(lm)
    if lexicon is not None and weights["lexicon"] > 0:
        scorers["lexicon"] = LexiconScorer(lexicon, config.oov_penalty)
    return scorers, {name: weights[name] for name in scorers}


@torch.inference_mode()
def beam_search(
    model,
    features: torch.Tensor,
    lengths: torch.Tensor,
    config: DecodingConfig,
    lm=None,
    lexicon: LexiconTrie | None = None,
) -> list[list[Hypothesis]]:
    """Joint CTC/attention beam search over a batch of utterances.

    Args:
        model: an :class:`~seq2seq.models.asr.ASRModel` in eval mode (``encode``, ``decode``,
            ``new_cache``, ``ctc_log_probs``, ``config.vocab_size``).
        features: (B, T, F) log-Mel features; lengths: (B,) valid frames.
        config: search settings.
        lm: a :class:`~seq2seq.models.lm.LanguageModel` fused with weight ``config.lm_weight``, or None.
        lexicon: a word list's tree, weighted by ``config.lexicon_weight``, or None.

    Returns:
        B lists of up to ``config.nbest`` :class:`Hypothesis`, best first.
    """
    memory, memory_lengths = model.encode(features, lengths)
    scorers, weights = build_scorers(model, config, lm, lexicon)
    return BeamSearch(scorers, weights, config)(memory, memory_lengths, model.config.vocab_size)


def decode_batch(
    model,
    features: torch.Tensor,
    lengths: torch.Tensor,
    config: DecodingConfig,
    lm=None,
    lexicon: LexiconTrie | None = None,
) -> list[list[int]]:
    """Best token ids per utterance: greedy search when ``beam_size == 1`` and only the decoder scores,
    beam search otherwise.
    """
    if config.beam_size == 1 and list(build_scorers(model, config, lm, lexicon)[0]) == ["attention"]:
        return greedy_search(model, features, lengths, config.max_length_ratio)
    found = beam_search(model, features, lengths, config, lm, lexicon)
    return [hyps[0].tokens if hyps else [] for hyps in found]
