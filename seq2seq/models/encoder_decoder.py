"""What the ASR and text-to-text models share: a CTC head on the encoder and an attention decoder over its
memory, with the entry points the beam search reads (``ctc_log_probs``, ``new_cache``, ``decode``).

A subclass builds ``ctc_head``, ``embedding``, ``decoder_position``, ``decoder`` and ``output`` and
defines ``encode``; ``forward`` is then the teacher-forced pass of both.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.nn.linear import streamed_linear
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.transformer import DecoderCache


class EncoderDecoder(nn.Module):
    """The CTC head, the decoder and the teacher-forced pass over a subclass's ``encode``."""

    def ctc_log_probs(self, memory: torch.Tensor) -> torch.Tensor:
        """memory: (B, S, D) -> (B, S, V) log-probabilities of the CTC head (float32).

        Computed time-major and returned as a transposed view, so that ``.transpose(0, 1)`` gives the
        (S, B, V) layout ``F.ctc_loss`` wants without copying the largest tensor of the step."""
        return self.ctc_head(memory.transpose(0, 1)).float().log_softmax(-1).transpose(0, 1)

    def new_cache(self) -> DecoderCache:
        return DecoderCache.empty(len(self.decoder.layers))

    def decode(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        cache: DecoderCache | None = None,
        token_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits for ``tokens`` (positions after ``cache.length``).

        Args:
            tokens: (B, U) input tokens, starting with SOS when the cache is empty.
            memory: (G, S, D); memory_lengths: (G,). G = B, or B = G × R when the R consecutive token
                rows of each utterance (its beams) share that utterance's memory row.
            cache: decoding state, updated in place; None for a full (teacher-forced) pass.
            token_lengths: (B,) valid tokens when padded (full pass only).

        Returns:
            (B, U, V) logits.
        """
        offset = cache.length if cache is not None else 0
        mask = None if token_lengths is None else lengths_to_mask(token_lengths, tokens.shape[1])
        x = self.decoder_position(self.embedding(tokens), offset)
        memory_mask = lengths_to_mask(memory_lengths, memory.shape[1])
        return streamed_linear(self.output, self.decoder(x, mask, memory, memory_mask, cache))

    def forward(self, inputs, input_lengths, tokens_in, token_lengths):
        """Teacher-forced pass.

        Args:
            inputs: (B, T, F) features or (B, S) source ids; input_lengths: (B,).
            tokens_in: (B, U) decoder inputs (SOS + tokens); token_lengths: (B,).

        Returns:
            ctc log-probs (B, S, V), memory lengths (B,), decoder logits (B, U, V).
        """
        memory, memory_lengths = self.encode(inputs, input_lengths)
        logits = self.decode(tokens_in, memory, memory_lengths, token_lengths=token_lengths)
        return self.ctc_log_probs(memory), memory_lengths, logits
