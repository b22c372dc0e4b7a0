"""Multi-head attention on ``scaled_dot_product_attention`` with an explicit key/value cache."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn.linear import make_linear


@dataclass
class KVCache:
    """Keys and values of one attention layer, ``(B, H, S, Dh)``, grown as decoding proceeds.

    Self-attention appends one step at a time; cross-attention fills it once from the encoder memory.
    """

    key: torch.Tensor | None = None
    value: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.key is None else self.key.shape[2]

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat([self.key, key], dim=2)
            self.value = torch.cat([self.value, value], dim=2)
        return self.key, self.value

    def select(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` of the batch (beam reordering, dropping finished utterances)."""
        if self.key is not None:
            self.key = self.key.index_select(0, indices)
            self.value = self.value.index_select(0, indices)


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self- and cross-attention.

    Args:
        d_model: model dimension D.
        num_heads: H; must divide D.
        dropout: attention-probability dropout (training only).
        linear_norm: weight parametrization of the projections ("none", "weight", "spectral").
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, linear_norm: str = "none"):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = make_linear(d_model, d_model, linear_norm)
        self.key = make_linear(d_model, d_model, linear_norm)
        self.value = make_linear(d_model, d_model, linear_norm)
        self.out = make_linear(d_model, d_model, linear_norm)
        # When True, forward also stores the attention probabilities (B, H, U, S) in ``self.weights``
        # (guided-attention loss, alignment plots); it then takes the explicit, slower path.
        self.record_weights = False
        self.weights: torch.Tensor | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        source: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        static_source: bool = False,
    ) -> torch.Tensor:
        """Attend from ``query`` to ``source`` (itself when None).

        Args:
            query: (B, U, D).
            source: (B, S, D) keys/values input; None for self-attention.
            attn_mask: bool, broadcastable to (B, H, U, S_total), True where attention is allowed.
            cache: keys/values of earlier steps (self-attention) or of the memory (cross-attention).
            static_source: the source is fixed across steps (cross-attention): project it once into
                the cache and reuse it.

        Returns:
            (B, U, D).
        """
        source = query if source is None else source
        if cache is not None and static_source and cache.key is not None:
            key, value = cache.key, cache.value
        else:
            key, value = self._split(self.key(source)), self._split(self.value(source))
            if cache is not None:
                key, value = cache.append(key, value)
        q = self._split(self.query(query))
        dropout = self.dropout if self.training else 0.0
        if self.record_weights:
            y = self._explicit_attention(q, key, value, attn_mask, dropout)
        else:
            y = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, dropout_p=dropout)
        b, h, u, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, u, h * dh))

    def _explicit_attention(self, q, key, value, attn_mask, dropout: float) -> torch.Tensor:
        scores = q @ key.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        self.weights = scores.softmax(-1)
        return F.dropout(self.weights, dropout, self.training) @ value
