"""Self-attention with relative positions (Transformer-XL, Dai et al. 2019), as Conformer encoders use it.

The score of query ``i`` for key ``j`` is ``((q_i + u) . k_j + (q_i + v) . W_p p_(i-j)) / sqrt(Dh)``:
a content term with a learned bias ``u`` and a position term over the sinusoid ``p`` of the distance
``i - j`` with a learned bias ``v`` (ESPnet's ``RelPositionMultiHeadedAttention``, "latest" variant).
The position term enters ``scaled_dot_product_attention`` as its additive float mask, so the kernel still
does the content scores, the softmax and the weighted sum. Only distances inside an utterance matter,
so an utterance gives the same output alone or inside a padded batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn.attention import MultiHeadAttention
from seq2seq.nn.linear import make_linear
from seq2seq.nn.masking import Packing


class RelativePositionAttention(MultiHeadAttention):
    """Multi-head self-attention with relative-position scores; the projections of
    :class:`MultiHeadAttention` plus a position projection and the biases ``u`` and ``v``.

    Args:
        d_model: model dimension D.
        num_heads: H; must divide D.
        dropout: attention-probability dropout (training only).
        linear_norm: weight parametrization of the projections ("none", "weight", "spectral").
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, linear_norm: str = "none"):
        super().__init__(d_model, num_heads, dropout, linear_norm)
        self.position = make_linear(d_model, d_model, linear_norm, bias=False)
        head_dim = d_model // num_heads
        self.content_bias = nn.Parameter(torch.empty(num_heads, 1, head_dim))  # u
        self.position_bias = nn.Parameter(torch.empty(num_heads, 1, head_dim))  # v
        nn.init.xavier_uniform_(self.content_bias)
        nn.init.xavier_uniform_(self.position_bias)

    def relative_self_attention(
        self, x: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend from ``x`` to itself.

        Args:
            x: (B, T, D).
            positions: (2T - 1, D) sinusoids of the distances ``T-1 .. 1-T``
                (:class:`~seq2seq.nn.positional.RelativePositionalEncoding`).
            attn_mask: bool, broadcastable to (B, H, T, T), True where attention is allowed.

        Returns:
            (B, T, D).
        """
        q, key, value = self._project(x, "query", "key", "value")
        y = self._relative(q, key, value, self._split(self.position(positions).unsqueeze(0)), attn_mask)
        return self.out(y.transpose(1, 2).reshape(x.shape))

    def packed_relative_self_attention(
        self, x: torch.Tensor, packing: Packing, positions: torch.Tensor
    ) -> torch.Tensor:
        """Relative-position self-attention over packed frames: each utterance attends to its own span.

        Args:
            x: (1, N, D), the valid frames of a padded batch (:meth:`Packing.pack`).
            packing: the spans of the utterances in ``x``.
            positions: (2L - 1, D) distance sinusoids for some L at least the longest span.

        Returns:
            (1, N, D).
        """
        q, key, value = self._project(x, "query", "key", "value")
        projected = self._split(self.position(positions).unsqueeze(0))  # (1, H, 2L - 1, Dh)
        centre = (projected.shape[2] - 1) // 2  # the row of distance 0
        spans = (part.split(packing.lengths, dim=2) for part in (q, key, value))
        outputs = [
            self._relative(*qkv, projected[:, :, centre - n + 1 : centre + n], None)
            for n, qkv in zip(packing.lengths, zip(*spans))
        ]
        return self.out(torch.cat(outputs, dim=2).transpose(1, 2).reshape(x.shape))

    def _relative(
        self,
        q: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """q, key, value (B, H, T, Dh), projected positions (1, H, 2T - 1, Dh) -> (B, H, T, Dh)."""
        scores = relative_shift((q + self.position_bias) @ positions.transpose(-2, -1))
        bias = scores / math.sqrt(q.shape[-1])
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float("-inf"))
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(
            q + self.content_bias, key, value, attn_mask=bias, dropout_p=dropout
        )


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """(..., T, 2T - 1) scores over distances ``T-1 .. 1-T`` -> (..., T, T) scores over keys.

    Entry ``[i, j]`` of the result is entry ``[i, T - 1 - i + j]`` of the input (distance ``i - j``):
    one zero column in front, a reshape that moves each row one step further, and a slice (Transformer-XL's
    trick: one copy, no gather index).
    """
    *lead, t, width = scores.shape
    padded = torch.cat([scores.new_zeros(*lead, t, 1), scores], dim=-1)  # (..., T, 2T)
    shifted = padded.view(*lead, width + 1, t)[..., 1:, :].reshape(*lead, t, width)
    return shifted[..., :t]
