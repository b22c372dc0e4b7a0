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
    """Multi-head attention with one entry point per use, each returning its results as values.

    :meth:`self_attention` (optionally with a growing cache), :meth:`packed_self_attention` (valid
    frames only) and :meth:`cross_attention` (optionally returning the probabilities). There is no
    ``forward``: each caller names the computation it wants.

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
        # Concatenated projections as modules of their own, made by fuse_projections() (empty: none).
        self.fused = nn.ModuleDict()

    def self_attention(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Attend from ``x`` to itself and, with a ``cache``, to the keys/values of earlier steps.

        Args:
            x: (B, U, D) inputs of the new positions.
            attn_mask: bool, broadcastable to (B, H, U, S) with S = ``cache.length`` + U, True where
                attention is allowed; None allows everything.
            cache: keys/values of earlier positions; this call's are appended to it.

        Returns:
            (B, U, D).
        """
        q, key, value = self._project(x, "query", "key", "value")  # one matmul for all three
        if cache is not None:
            key, value = cache.append(key, value)
        return self._attend(q, key, value, attn_mask)[0]

    def packed_self_attention(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Self-attention over packed frames: each utterance attends to its own span.

        Works as variable-length attention kernels do: no work on padding, and no copy into the padded
        layout and back.

        Args:
            x: (1, N, D), the valid frames of a padded batch (:meth:`Packing.pack`).
            packing: the spans of the utterances in ``x``.

        Returns:
            (1, N, D).
        """
        q, key, value = self._project(x, "query", "key", "value")
        dropout = self.dropout if self.training else 0.0
        spans = (part.split(packing.lengths, dim=2) for part in (q, key, value))  # split: cheap backward
        y = torch.cat([F.scaled_dot_product_attention(*qkv, dropout_p=dropout) for qkv in zip(*spans)], dim=2)
        return self.out(y.transpose(1, 2).reshape(x.shape))

    def cross_attention(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        attn_mask: torch.Tensor | None,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` to ``memory``.

        Args:
            x: (B, U, D) queries. With a ``memory`` of G rows, B = G × R and query rows
                ``g·R .. g·R+R-1`` attend to memory row g (the R beams of one utterance share its
                memory, which is then projected, stored and attended once per utterance, not per beam).
            memory: (G, S, D) encoder output.
            attn_mask: bool, broadcastable to (G, H, R·U, S), e.g. (G, 1, 1, S) valid memory frames;
                True where attention is allowed.
            cache: the memory's keys/values: filled by the first call, then reused as they are (the
                memory is fixed across decoding steps).
            need_weights: also return the attention probabilities; takes the explicit, slower path
                (guided-attention loss, alignment plots).

        Returns:
            (B, U, D), and the probabilities (B, H, U, S) (0 where ``attn_mask`` is False) or None.
        """
        q = self._split(self.query(x))
        if cache is not None and cache.key is not None:
            key, value = cache.key, cache.value
        else:
            key, value = self._project(memory, "key", "value")  # keys and values in one matmul
            if cache is not None:
                key, value = cache.append(key, value)
        return self._attend(q, key, value, attn_mask, need_weights)

    def _attend(
        self,
        q: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q (B, H, U, Dh) over key/value (G, H, S, Dh), B = G × R -> (B, U, D), weights (B, H, U, S)."""
        b, h, u, dh = q.shape
        groups = key.shape[0]
        if groups != b:  # fold the R rows sharing a memory row into its query axis: (G, H, R·U, Dh)
            if b % groups:
                raise ValueError(f"query batch {b} is not a multiple of the memory batch {groups}")
            q = q.view(groups, b // groups, h, u, dh).transpose(1, 2).reshape(groups, h, -1, dh)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = _probabilities(q, key, attn_mask)
            y = dropout_fn(weights, dropout, self.training) @ value
        else:
            y = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask, dropout_p=dropout)
        if groups != b:
            y = _unfold(y, b)
            weights = None if weights is None else _unfold(weights, b)
        return self.out(y.transpose(1, 2).reshape(b, u, h * dh)), weights

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, Dh)."""
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def fuse_projections(self) -> None:
        """Keep the concatenations that :meth:`_project` uses (query+key+value, key+value) as linear
        layers of their own, so that int8 quantization can replace them too.

        For inference only: the fused copies are not the parameters, so training would not update
        them. Nothing is fused when a projection is weight-parametrized (its weight is computed).
        """
        layers = {name: getattr(self, name) for name in ("query", "key", "value")}
        if any(type(m) is not nn.Linear or hasattr(m, "parametrizations") for m in layers.values()):
            return
        for names in (("query", "key", "value"), ("key", "value")):
            parts = [layers[name] for name in names]
            fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts)).to(parts[0].weight)
            with torch.no_grad():
                fused.weight.copy_(torch.cat([p.weight for p in parts]))
                fused.bias.copy_(torch.cat([p.bias for p in parts]))
            self.fused["_".join(names)] = fused

    def _project(self, x: torch.Tensor, *names: str) -> list[torch.Tensor]:
        """``x`` through the projections ``names`` (of query, key, value) as one matmul (a wider matmul
        runs at a higher rate), each result split into heads (B, H, T, Dh)."""
        fused = "_".join(names)
        if fused in self.fused:
            y = self.fused[fused](x)
        else:
            layers = [getattr(self, name) for name in names]
            weight, bias = (torch.cat([getattr(m, p) for m in layers]) for p in ("weight", "bias"))
            y = F.linear(x, weight, bias)
        return [self._split(part) for part in y.chunk(len(names), -1)]


def _probabilities(q: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax of the scaled scores, as ``scaled_dot_product_attention`` computes them inside:
    (..., U, Dh) queries over (..., S, Dh) keys -> (..., U, S), 0 where ``attn_mask`` is False."""
    scores = q @ key.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1)


def _unfold(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Undo the folding of R query rows per memory row: (G, H, R·U, X) -> (B, H, U, X), B = G × R."""
    groups, h, folded, last = x.shape
    rows = batch // groups
    return x.view(groups, h, rows, folded // rows, last).transpose(1, 2).reshape(batch, h, -1, last)
