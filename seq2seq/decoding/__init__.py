"""Decoding: greedy and batched beam search for the ASR model, with a CTC prefix scorer (no Lightning)."""

from seq2seq.decoding.beam_search import BeamSearch, Hypothesis, beam_search, build_scorers, decode_batch
from seq2seq.decoding.config import DecodingConfig
from seq2seq.decoding.greedy import ctc_greedy, greedy_search
from seq2seq.decoding.scorer import AttentionScorer, CTCPrefixScorer, Scorer

__all__ = [
    "AttentionScorer",
    "BeamSearch",
    "CTCPrefixScorer",
    "DecodingConfig",
    "Hypothesis",
    "Scorer",
    "beam_search",
    "build_scorers",
    "ctc_greedy",
    "decode_batch",
    "greedy_search",
]
