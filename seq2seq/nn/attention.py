"""Multi-head attention on ``scaled_dot_product_attention`` with an explicit key/value cache."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn.dropout import dropout as dropout_fn
from seq2seq.nn.linear import make_linear
from seq2seq.nn.masking import Packing


class KVCache:
    """Keys and values of one attention layer, ``(B, H, S, Dh)``, grown as decoding proceeds.

    Self-attention appends one step at a time into a buffer with spare room (half as much again, at
    least 16 positions), so a step writes only its own keys instead of copying all earlier ones;
    ``key``/``value`` are views of the filled part. Beam reordering copies the buffer with its spare
    room. Cross-attention fills it once from the encoder memory.
    """

    def __init__(self) -> None:
        self._key: torch.Tensor | None = None
        self._value: torch.Tensor | None = None
        self._length = 0

    @property
    def key(self) -> torch.Tensor | None:
        return None if self._key is None else self._key[:, :, : self._length]

    @property
    def value(self) -> torch.Tensor | None:
        return None if self._value is None else self._value[:, :, : self._length]

    @property
    def length(self) -> int:
        return self._length

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_length = self._length + key.shape[2]
        if self._key is None or new_length > self._key.shape[2] or self._key.dtype != key.dtype:
            capacity = new_length + max(16, new_length // 2) if self._length else new_length
            self._key, self._value = (
                self._grow(old, new, capacity) for old, new in ((self.key, key), (self.value, value))
            )
        else:
            self._key[:, :, self._length : new_length] = key
            self._value[:, :, self._length : new_length] = value
        self._length = new_length
        return self.key, self.value

    def _grow(self, old: torch.Tensor | None, new: torch.Tensor, capacity: int) -> torch.Tensor:
        b, h, _, dh = new.shape
        buffer = new.new_empty(b, h, capacity, dh)
        if old is not None:
            buffer[:, :, : self._length] = old
        buffer[:, :, self._length : self._length + new.shape[2]] = new
        return buffer

    def select(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` of the batch (beam reordering, dropping finished utterances)."""
        if self._key is not None:
            self._key = self._key.index_select(0, indices)
            self._value = self._value.index_select(0, indices)


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
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """Attend from ``query`` to ``source`` (itself when None).

        Args:
            query: (B, U, D); with a ``source`` of G rows, B = G × R and query rows ``g·R .. g·R+R-1``
                attend to source row g (the R beams of one utterance share its memory, which is then
                stored and attended once per utterance rather than once per beam).
            source: (G, S, D) keys/values input; None for self-attention.
            attn_mask: bool, broadcastable to (G, H, U, S_total), True where attention is allowed.
            cache: keys/values of earlier steps (self-attention) or of the memory (cross-attention).
            static_source: the source is fixed across steps (cross-attention): project it once into
                the cache and reuse it.
            packing: self-attention over packed frames (no source, mask or cache): ``query`` is
                (1, N, D), the valid frames of a padded batch; each utterance attends to itself.

        Returns:
            (B, U, D), or (1, N, D) with ``packing``.
        """
        if packing is not None:
            return self._packed_self_attention(query, packing)
        if source is None:  # self-attention: queries, keys and values in one matmul
            q, key, value = self._project(query, self.query, self.key, self.value)
            if cache is not None:
                key, value = cache.append(key, value)
        else:
            q = self._split(self.query(query))
            if cache is not None and static_source and cache.key is not None:
                key, value = cache.key, cache.value
            else:
                key, value = self._project(source, self.key, self.value)
                if cache is not None:
                    key, value = cache.append(key, value)
        b, h, u, dh = q.shape
        groups = key.shape[0]
        if groups != b:  # fold the R rows sharing a source row into its query axis: (G, H, R·U, Dh)
            if b % groups:
                raise ValueError(f"query batch {b} is not a multiple of the source batch {groups}")
            q = q.view(groups, b // groups, h, u, dh).transpose(1, 2).reshape(groups, h, -1, dh)
        dropout = self.dropout if self.training else 0.0
        if self.record_weights:
            y = self._explicit_attention(q, key, value, attn_mask, dropout)
        else:
            y = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, dropout_p=dropout)
        if groups != b:
            y = y.view(groups, h, b // groups, u, dh).transpose(1, 2)
        return self.out(y.transpose(-3, -2).reshape(b, u, h * dh))

    def _packed_self_attention(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """(1, N, D) -> (1, N, D): attention per utterance span, as variable-length attention kernels
        do: no work on padding, and no copy into the padded layout and back."""
        if self.record_weights:
            raise ValueError("record_weights needs the padded layout; do not pack this stack")
        q, key, value = self._project(x, self.query, self.key, self.value)
        dropout = self.dropout if self.training else 0.0
        spans = (part.split(packing.lengths, dim=2) for part in (q, key, value))  # split: cheap backward
        y = torch.cat([F.scaled_dot_product_attention(*qkv, dropout_p=dropout) for qkv in zip(*spans)], dim=2)
        return self.out(y.transpose(1, 2).reshape(x.shape))

    def _project(self, x: torch.Tensor, *layers: nn.Module) -> list[torch.Tensor]:
        """``x`` through several projections as one matmul (a wider matmul runs at a higher rate), each
        result split into heads (B, H, T, Dh)."""
        weight = torch.cat([layer.weight for layer in layers])
        bias = torch.cat([layer.bias for layer in layers])
        return [self._split(part) for part in F.linear(x, weight, bias).chunk(len(layers), -1)]

    def _explicit_attention(self, q, key, value, attn_mask, dropout: float) -> torch.Tensor:
        scores = q @ key.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        self.weights = scores.softmax(-1)
        return dropout_fn(self.weights, dropout, self.training) @ value
