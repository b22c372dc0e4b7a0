"""Text-to-text Transformer (grapheme-to-phoneme and the like): token embeddings on both sides, an encoder
with an optional CTC head, an attention decoder.

It offers the entry points of :class:`~seq2seq.models.asr.ASRModel` (``encode``, ``decode`` with an
explicit cache, ``new_cache``, ``ctc_log_probs``, ``forward``), so greedy and joint CTC/attention beam
search (:mod:`seq2seq.decoding`) run on it unchanged: the source ids are its "features".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from seq2seq.core.text import NUM_RESERVED, PAD_ID
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.nn.conformer import (
    ConformerConfig,
    EncoderKind,
    adds_absolute_positions,
    build_encoder,
    check_encoder,
)
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.positional import PositionalEncoding
from seq2seq.nn.transformer import Decoder, TransformerConfig


def _stack() -> TransformerConfig:
    return TransformerConfig(num_layers=3, d_model=256, num_heads=4, ffn_dim=1024)


@dataclass(frozen=True)
class Text2TextModelConfig:
    """Shape of a text-to-text model; saved inside every checkpoint and model package.

    Attributes:
        source_vocab_size: source ids, reserved ones included (set from the source tokenizer).
        vocab_size: target ids, reserved ones included (set from the target tokenizer).
        encoder: the encoder stack (its norm kind and placement as for ASR).
        decoder: the decoder stack (same ``d_model``).
        tie_target_embeddings: share the decoder's input embedding and output projection.
        encoder_kind: ``transformer`` or ``conformer``, whose convolution module sees a letter's
            neighbours directly (as for ASR: the stack's FFN size is each of its two half-step FFNs').
        conformer: the Conformer's convolution module and positions (used by ``conformer`` only). Give
            words layer norm there: batch norm's running statistics follow the word length, and the
            length-bucketed batches each have one (recipes/cmudict_g2p/README.md).
    """

    source_vocab_size: int = 64
    vocab_size: int = 64
    encoder: TransformerConfig = field(default_factory=_stack)
    decoder: TransformerConfig = field(default_factory=_stack)
    tie_target_embeddings: bool = False
    encoder_kind: EncoderKind = "transformer"
    conformer: ConformerConfig = field(default_factory=ConformerConfig)

    def __post_init__(self) -> None:
        for name in ("source_vocab_size", "vocab_size"):
            if getattr(self, name) < NUM_RESERVED + 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= {NUM_RESERVED + 1}")
        if self.encoder.d_model != self.decoder.d_model:
            raise ValueError(
                f"encoder.d_model={self.encoder.d_model} must equal decoder.d_model={self.decoder.d_model}"
            )
        check_encoder(self.encoder_kind, self.encoder, self.conformer)


def _embedding(vocab_size: int, d_model: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
    # std D^-1/2, so that the sqrt(D) scale of the positional encoding gives unit-scale inputs
    nn.init.normal_(embedding.weight, std=d_model**-0.5)
    with torch.no_grad():
        embedding.weight[PAD_ID].zero_()
    return embedding


class Text2TextModel(EncoderDecoder):
    """Encoder-decoder over token ids, with a CTC head on the encoder."""

    def __init__(self, config: Text2TextModelConfig):
        super().__init__()
        self.config = config
        d_model = config.encoder.d_model
        self.source_embedding = _embedding(config.source_vocab_size, d_model)
        absolute = adds_absolute_positions(config.encoder_kind, config.conformer)
        self.encoder_position = PositionalEncoding(d_model, config.encoder.dropout, absolute=absolute)
        self.encoder = build_encoder(config.encoder_kind, config.encoder, config.conformer)
        self.ctc_head = nn.Linear(d_model, config.vocab_size)
        self.embedding = _embedding(config.vocab_size, d_model)
        self.decoder_position = PositionalEncoding(d_model, config.decoder.dropout)
        self.decoder = Decoder(config.decoder)
        self.output = nn.Linear(d_model, config.vocab_size)
        if config.tie_target_embeddings:
            self.output.weight = self.embedding.weight

    def encode(self, sources: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sources: (B, S) ids, lengths: (B,) -> memory (B, S, D), memory lengths (B,) (= lengths)."""
        mask = lengths_to_mask(lengths, sources.shape[1])
        return self.encoder(self.encoder_position(self.source_embedding(sources)), mask), lengths
