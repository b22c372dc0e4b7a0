"""Decoder-only Transformer language model over the ASR token ids (same reserved SOS/EOS/PAD ids).

Entry points: :meth:`LanguageModel.forward` (a full pass, or incremental with an explicit cache) and
:meth:`LanguageModel.new_cache`. Sentences are modelled as ``SOS y EOS``: the logits at each position
predict the next token, the last one predicts EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID
from seq2seq.nn.linear import streamed_linear
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.positional import PositionalEncoding
from seq2seq.nn.transformer import Decoder, DecoderCache, TransformerConfig


@dataclass(frozen=True)
class LMModelConfig:
    """Shape of a language model; saved inside every checkpoint and model package.

    Attributes:
        vocab_size: output symbols, reserved ids included (set from the tokenizer).
        decoder: the causal stack (its norm kind and placement as in every stack).
    """

    vocab_size: int = 64
    decoder: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(num_layers=4, d_model=256, num_heads=4, ffn_dim=1024)
    )

    def __post_init__(self) -> None:
        if self.vocab_size < 6:
            raise ValueError(f"vocab_size={self.vocab_size} must be >= 6")


class LanguageModel(nn.Module):
    """Causal self-attention + feed-forward layers, no cross-attention; next-token logits."""

    def __init__(self, config: LMModelConfig):
        super().__init__()
        self.config = config
        d_model = config.decoder.d_model
        self.embedding = nn.Embedding(config.vocab_size, d_model)
        # std D^-1/2, so that the sqrt(D) scale of the positional encoding gives unit-scale inputs
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.position = PositionalEncoding(d_model, config.decoder.dropout)
        self.decoder = Decoder(config.decoder, cross_attention=False)
        self.output = nn.Linear(d_model, config.vocab_size)

    def new_cache(self) -> DecoderCache:
        """An empty per-layer key/value cache (``.length``, ``.select(indices)``)."""
        return DecoderCache.empty(len(self.decoder.layers))

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Next-token logits for ``tokens`` (positions after ``cache.length``).

        Args:
            tokens: (B, U), starting with SOS when the cache is empty (or None).
            token_lengths: (B,) valid tokens when padded (full pass only); padded positions' logits
                are meaningless and never change the valid ones.
            cache: decoding state of the earlier positions, updated in place; None for a full pass.

        Returns:
            (B, U, V) logits.
        """
        offset = cache.length if cache is not None else 0
        mask = None if token_lengths is None else lengths_to_mask(token_lengths, tokens.shape[1])
        x = self.position(self.embedding(tokens), offset)
        return streamed_linear(self.output, self.decoder(x, mask, None, None, cache))

    def log_probs(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` as next-token log-probabilities (B, U, V) float32 over the tokens a sentence
        can hold: BLANK, PAD and SOS (never targets) get ``-inf`` and no probability mass."""
        logits = self(tokens, token_lengths, cache).float()
        return logits.masked_fill(_never_emitted(logits), float("-inf")).log_softmax(-1)

    @torch.no_grad()
    def sentence_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-token log-probabilities of ``y EOS`` given ``SOS y``: tokens (B, U) without SOS/EOS,
        lengths (B,) -> (B, U + 1) float32, 0 after each sentence's EOS."""
        inputs, targets = lm_io(tokens, lengths)
        log_probs = self.log_probs(inputs, lengths + 1)
        picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        valid = lengths_to_mask(lengths + 1, inputs.shape[1])
        return picked.masked_fill(~valid, 0.0)


NEVER_EMITTED = (BLANK_ID, PAD_ID, SOS_ID)


def _never_emitted(logits: torch.Tensor) -> torch.Tensor:
    """(V,) True on the ids no sentence contains (:data:`NEVER_EMITTED`)."""
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[list(NEVER_EMITTED)] = True
    return mask


def lm_io(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``SOS y`` and targets ``y EOS`` (PAD after), both (B, U + 1), from padded tokens (B, U)."""
    batch = tokens.shape[0]
    inputs = torch.cat([tokens.new_full((batch, 1), SOS_ID), tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_full((batch, 1), PAD_ID)], dim=1)
    targets = targets.masked_fill(~lengths_to_mask(lengths, targets.shape[1]), PAD_ID)
    targets[torch.arange(batch, device=tokens.device), lengths] = EOS_ID
    return inputs, targets
