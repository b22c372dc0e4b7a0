"""Decoding, free of Lightning: greedy and batched beam search (ASR, with a CTC prefix scorer and an
optional LM) and the autoregressive TTS synthesis loop."""

from seq2seq.decoding.beam_search import BeamSearch, Hypothesis, beam_search, build_scorers, decode_batch
from seq2seq.decoding.config import DecodingConfig
from seq2seq.decoding.greedy import ctc_greedy, greedy_search
from seq2seq.decoding.lm_scorer import LMScorer
from seq2seq.decoding.scorer import AttentionScorer, CTCPrefixScorer, Scorer
from seq2seq.decoding.tts import Synthesis, synthesize

__all__ = [
    "AttentionScorer",
    "BeamSearch",
    "CTCPrefixScorer",
    "DecodingConfig",
    "Hypothesis",
    "LMScorer",
    "Scorer",
    "Synthesis",
    "beam_search",
    "build_scorers",
    "ctc_greedy",
    "decode_batch",
    "greedy_search",
    "synthesize",
]
