"""How to search for a transcript: :class:`DecodingConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from seq2seq.core.config import check_choice

EarlyStop = Literal["bound", "espnet", "none"]


@dataclass(frozen=True)
class DecodingConfig:
    """Search settings shared by greedy and beam search.

    The score of a hypothesis ``y`` is ``(1 - ctc_weight) * log P_att(y) + ctc_weight * log P_ctc(y)
    + lm_weight * log P_lm(y) + lexicon_weight * log P_lex(y) + length_penalty * len(y)``; the
    log-probabilities include the end of sentence. The LM term exists only when a language model is given
    (shallow fusion), the lexicon term only when a word list is (:mod:`seq2seq.decoding.lexicon`).

    Attributes:
        beam_size: hypotheses kept per utterance; 1 with ``ctc_weight=0`` is greedy search.
        ctc_weight: weight of the CTC prefix score (0: attention only, 1: CTC only; then every token is
            a CTC candidate, since no attention pre-beam exists).
        lm_weight: weight of the language model's log-probability (0: the LM is not run at all).
        lexicon_weight: weight of the word list's unigram log-probability (0: the list is not used).
        oov_penalty: what a word outside the word list costs (log domain, before ``lexicon_weight``);
            a large value keeps the search on listed words.
        length_penalty: added to the score per output token (EOS excluded); positive values favour
            longer outputs, as ESPnet's length bonus does.
        length_normalization: rank ended hypotheses by ``score / (len(y) + 1)`` (EOS counted).
        max_length_ratio: at most ``max(1, int(max_length_ratio * S))`` tokens for ``S`` encoder frames.
        min_length_ratio: at least ``int(min_length_ratio * S)`` tokens before EOS may be chosen.
        nbest: ended hypotheses returned per utterance, best first (``<= beam_size``).
        pre_beam_ratio: CTC prefix scores are computed only for the ``ceil(pre_beam_ratio * beam_size)``
            best attention candidates of each hypothesis, as ESPnet does; the CTC cost then scales with
            the beam instead of the vocabulary.
        early_stop: when an utterance stops before every hypothesis has ended or hit the maximum length.
            ``bound`` stops once ``nbest`` ended hypotheses all score above the best running one. Every
            score increment is a log-probability (``<= 0``) when there is no length reward, so a running
            hypothesis can only get worse: the rule is exact, it never changes the result, it only
            saves work. It therefore requires ``length_penalty <= 0`` and no length normalization.
            ``espnet`` is ESPnet's ``end_detect`` heuristic: stop when, for each of the last 3 output
            lengths, the best hypothesis that ended at that length is more than 10 (log domain) below
            the best ended one, i.e. recent endings are hopeless. ``none`` runs until every hypothesis
            has ended or reached the maximum length.
        ctc_window: the CTC prefix score reads only this many encoder frames on each side of the point
            each hypothesis's alignment has reached (ESPnet's ``margin``), so that its cost grows
            linearly with the duration instead of quadratically; 0 reads every frame. The default, 50
            frames (2 s at 40 ms), changed no transcript of the demo test set (nor did 10 or 25) and cut
            the search time of a 120 s recording by a quarter (``benchmarks/long_decoding.py``);
            utterances of at most 100 encoder frames are decoded exactly as without it.
    """

    beam_size: int = 10
    ctc_weight: float = 0.3
    lm_weight: float = 0.0
    lexicon_weight: float = 0.0
    oov_penalty: float = 30.0
    length_penalty: float = 0.0
    length_normalization: bool = False
    max_length_ratio: float = 1.0
    min_length_ratio: float = 0.0
    nbest: int = 1
    pre_beam_ratio: float = 1.5
    early_stop: EarlyStop = "bound"
    ctc_window: int = 50

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size={self.beam_size} must be >= 1")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight={self.ctc_weight} must be in [0, 1]")
        if not (math.isfinite(self.lm_weight) and self.lm_weight >= 0):
            raise ValueError(f"lm_weight={self.lm_weight} must be finite and >= 0")
        if not (math.isfinite(self.lexicon_weight) and self.lexicon_weight >= 0):
            raise ValueError(f"lexicon_weight={self.lexicon_weight} must be finite and >= 0")
        if not (math.isfinite(self.oov_penalty) and self.oov_penalty >= 0):
            raise ValueError(f"oov_penalty={self.oov_penalty} must be finite and >= 0")
        if not math.isfinite(self.length_penalty):
            raise ValueError(f"length_penalty={self.length_penalty} must be finite")
        if not self.max_length_ratio > 0.0:
            raise ValueError(f"max_length_ratio={self.max_length_ratio} must be > 0")
        if not 0.0 <= self.min_length_ratio <= self.max_length_ratio:
            raise ValueError(f"min_length_ratio={self.min_length_ratio} must be in [0, max_length_ratio]")
        if not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"nbest={self.nbest} must be in [1, beam_size={self.beam_size}]")
        if not self.pre_beam_ratio >= 1.0:
            raise ValueError(f"pre_beam_ratio={self.pre_beam_ratio} must be >= 1")
        if self.ctc_window < 0:
            raise ValueError(f"ctc_window={self.ctc_window} must be >= 0 (0: every frame)")
        check_choice("early_stop", self.early_stop, get_args(EarlyStop))
        if self.early_stop == "bound" and (self.length_penalty > 0 or self.length_normalization):
            raise ValueError("early_stop='bound' is exact only without length rewards; use espnet or none")

    @property
    def pre_beam_size(self) -> int:
        """Candidates per hypothesis that receive a CTC prefix score."""
        return math.ceil(self.pre_beam_ratio * self.beam_size)
