"""Transformer encoder and decoder stacks whose normalization kind and placement are configurable.

Placement is decided in exactly one place, :class:`Residual`. Stacks take already embedded inputs
``(B, T, D)`` with a validity mask; front-ends and positional encodings belong to the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import nn

from seq2seq.nn.attention import KVCache, MultiHeadAttention
from seq2seq.nn.dropout import Dropout, relu_dropout
from seq2seq.nn.linear import LINEAR_NORMS, LinearNorm, make_linear
from seq2seq.nn.masking import Packing, packs_padding
from seq2seq.nn.norms import NormConfig, build_norm, check_choice

Placement = Literal["pre", "post"]
Activation = Literal["relu", "gelu", "swish"]


@dataclass(frozen=True)
class TransformerConfig:
    """One stack (encoder or decoder).

    Attributes:
        num_layers: number of layers.
        d_model: model dimension D; encoder and decoder of one model share it.
        num_heads: attention heads; must divide ``d_model``.
        ffn_dim: hidden size of the position-wise feed-forward block.
        dropout: dropout on residual branches and inside the feed-forward block.
        attention_dropout: dropout on attention probabilities.
        activation: feed-forward non-linearity.
        norm: which normalization each residual block uses.
        placement: ``pre`` (norm before each sublayer, plus a final norm after the stack; trains
            without warm-up) or ``post`` (norm after each residual sum; the original Transformer).
        linear_norm: weight or spectral normalization of every linear layer, or none.
    """

    num_layers: int = 6
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: Activation = "relu"
    norm: NormConfig = field(default_factory=NormConfig)
    placement: Placement = "pre"
    linear_norm: LinearNorm = "none"

    def __post_init__(self) -> None:
        if isinstance(self.norm, dict):  # filled from YAML/JSON
            object.__setattr__(self, "norm", NormConfig(**self.norm))
        if self.num_layers < 0:
            raise ValueError(f"num_layers={self.num_layers} must be >= 0")
        for name in ("d_model", "num_heads", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        check_choice("activation", self.activation, get_args(Activation))
        check_choice("placement", self.placement, get_args(Placement))
        check_choice("linear_norm", self.linear_norm, LINEAR_NORMS)
        if self.norm.kind == "group" and self.d_model % self.norm.groups:  # fail at config time, not build
            raise ValueError(f"norm.groups={self.norm.groups} must divide d_model={self.d_model}")


class Residual(nn.Module):
    """A sublayer with its residual connection and its norm, placed before or after.

    ::

        pre:   x ──┬── norm ── sublayer ── dropout ──(+)── y
                   └───────────────────────────────────┘
        post:  x ──┬── sublayer ── dropout ──(+)── norm ── y
                   └──────────────────────────┘

    In pre-norm the residual path carries the un-normalized ``x``; the stack applies a final norm.
    """

    def __init__(self, sublayer: nn.Module, norm: nn.Module, placement: Placement, dropout: float):
        super().__init__()
        self.sublayer, self.norm, self.placement = sublayer, norm, placement
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *args, **kwargs) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) valid frames (for batch-statistic norms) -> (B, T, D)."""
        if self.placement == "pre":
            return x + self.dropout(self.sublayer(self.norm(x, mask), *args, **kwargs))
        return self.norm(x + self.dropout(self.sublayer(x, *args, **kwargs)), mask)


class FeedForward(nn.Module):
    """Position-wise ``Linear -> activation -> dropout -> Linear``."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.up = make_linear(config.d_model, config.ffn_dim, config.linear_norm)
        self.down = make_linear(config.ffn_dim, config.d_model, config.linear_norm)
        self.activation = {"relu": nn.ReLU(), "gelu": nn.GELU(), "swish": nn.SiLU()}[config.activation]
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D); with a ``mask`` (B, T), on CPU only valid frames are computed.

        The feed-forward block is most of a layer's FLOPs and works frame by frame, so padding (about a
        third of a batch of 3-8 s utterances) is packed out first (see :func:`packs_padding`); padded
        outputs are then 0.
        """
        if mask is None or not packs_padding(x) or bool(mask.all()):
            return self._block(x)
        packing = Packing(mask)
        return packing.unpack(self._block(packing.pack(x)))

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if isinstance(self.activation, nn.ReLU):  # one pass, and only its output kept for backward
            return self.down(relu_dropout(h, self.dropout.p, self.training))
        return self.down(self.dropout(self.activation(h)))


def _residual(sublayer: nn.Module, config: TransformerConfig) -> Residual:
    return Residual(sublayer, build_norm(config.norm, config.d_model), config.placement, config.dropout)


def _attention(config: TransformerConfig) -> MultiHeadAttention:
    return MultiHeadAttention(config.d_model, config.num_heads, config.attention_dropout, config.linear_norm)


def _final_norm(config: TransformerConfig) -> nn.Module:
    """Pre-norm stacks end with a norm (their residual path is never normalized); post-norm needs none."""
    if config.placement == "pre":
        return build_norm(config.norm, config.d_model)
    return build_norm(NormConfig(kind="none"), config.d_model)


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = _residual(_attention(config), config)
        self.feed_forward = _residual(FeedForward(config), config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D) with ``mask`` (B, T), or (1, N, D) valid frames with ``packing`` and no masks."""
        x = self.self_attn(x, mask, None, attn_mask, packing=packing)
        return self.feed_forward(x, mask, mask)  # the norm's mask, then the feed-forward's (packing)


class Encoder(nn.Module):
    """Stack of self-attention layers over embedded inputs."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.final_norm = _final_norm(config)
        # Instance norm takes statistics per utterance, so it needs the (B, T) layout in every layer.
        self.packable = config.norm.kind != "instance"

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) True on valid frames -> (B, T, D).

        On CPU the valid frames run through the stack packed (:class:`Packing`): no part of a layer
        works on padding; attention runs per utterance. Padded outputs are then 0; valid ones are what
        the padded computation gives.
        """
        if not self._packs(x, mask):
            attn_mask = mask[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask, attn_mask)
            return self.final_norm(x, mask)
        packing = Packing(mask)
        x = packing.pack(x)
        for layer in self.layers:
            x = layer(x, None, None, packing)
        return packing.unpack(self.final_norm(x, None))

    def _packs(self, x: torch.Tensor, mask: torch.Tensor) -> bool:
        recording = any(layer.self_attn.sublayer.record_weights for layer in self.layers)
        if not (self.packable and packs_padding(x)) or recording:
            return False
        return bool(mask.any()) and not bool(mask.all())  # some padding, and something besides it


@dataclass
class DecoderCache:
    """Explicit decoding state: per layer, self-attention keys/values so far and the memory's projection."""

    self_attn: list[KVCache]
    cross_attn: list[KVCache]

    @classmethod
    def empty(cls, num_layers: int) -> DecoderCache:
        return cls([KVCache() for _ in range(num_layers)], [KVCache() for _ in range(num_layers)])

    @property
    def length(self) -> int:
        """Number of positions already decoded."""
        return self.self_attn[0].length if self.self_attn else 0

    def select(self, indices: torch.Tensor) -> None:
        """Keep batch rows ``indices`` (reorder beams, drop finished utterances)."""
        for kv in self.self_attn + self.cross_attn:
            kv.select(indices)


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = _residual(_attention(config), config)
        self.cross_attn = _residual(_attention(config), config)
        self.feed_forward = _residual(FeedForward(config), config)

    def forward(self, x, mask, self_mask, memory, memory_mask, self_cache=None, cross_cache=None):
        x = self.self_attn(x, mask, None, self_mask, self_cache)
        x = self.cross_attn(x, mask, memory, memory_mask, cross_cache, static_source=True)
        return self.feed_forward(x, mask, mask)  # the norm's mask, then the feed-forward's (packing)


class Decoder(nn.Module):
    """Stack of causal self-attention + cross-attention layers over embedded inputs."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.final_norm = _final_norm(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Decode positions ``cache.length ..`` given everything before them.

        Args:
            x: (B, U, D) embedded inputs of the new positions.
            mask: (B, U) valid positions, or None when all are valid (incremental decoding).
            memory: (B, S, D) encoder output.
            memory_mask: (B, S) valid memory frames.
            cache: state of earlier positions; updated in place. None recomputes from scratch.

        Returns:
            (B, U, D).
        """
        past = cache.length if cache is not None else 0
        self_mask = self_attention_mask(x.shape[1], past, mask, x.device)
        cross_mask = memory_mask[:, None, None, :]
        for i, layer in enumerate(self.layers):
            caches = (cache.self_attn[i], cache.cross_attn[i]) if cache is not None else (None, None)
            x = layer(x, mask, self_mask, memory, cross_mask, *caches)
        return self.final_norm(x, mask)


def self_attention_mask(length: int, past: int, mask: torch.Tensor | None, device) -> torch.Tensor:
    """Causal mask for new positions ``past .. past+length-1`` over all keys so far.

    Returns:
        bool (1 or B, 1, length, past + length), True where attention is allowed.
    """
    query = torch.arange(past, past + length, device=device).unsqueeze(1)
    key = torch.arange(past + length, device=device).unsqueeze(0)
    allowed = (key <= query).unsqueeze(0)
    if mask is not None:
        if past:
            mask = torch.cat([mask.new_ones(mask.shape[0], past), mask], dim=1)
        allowed = allowed & mask[:, None, :]
    return allowed.unsqueeze(1)
