"""Transformer encoder and decoder stacks whose normalization kind and placement are configurable.

Placement is decided in exactly one place, :class:`Residual`. Stacks take already embedded inputs
``(B, T, D)`` with a validity mask; front-ends and positional encodings belong to the models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, get_args

import torch
from torch import nn

from seq2seq.core.config import check_choice
from seq2seq.nn.attention import KVCache, MultiHeadAttention
from seq2seq.nn.dropout import Dropout, relu_dropout
from seq2seq.nn.linear import LINEAR_NORMS, LinearNorm, make_linear, streamed_linear
from seq2seq.nn.masking import Packing, packs_padding
from seq2seq.nn.norms import NormConfig, build_norm

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
    ``sublayer`` is held for its parameters; the caller passes what to run on it as ``branch`` (an
    attention sublayer has several entry points, each with its own inputs).
    """

    def __init__(self, sublayer: nn.Module, norm: nn.Module, placement: Placement, dropout: float):
        super().__init__()
        self.sublayer, self.norm, self.placement = sublayer, norm, placement
        self.dropout = Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, branch: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run ``branch`` with the residual connection and the norm.

        Args:
            x: (B, T, D).
            mask: (B, T) valid frames, for batch-statistic norms; None when all are valid.
            branch: the sublayer's computation (B, T, D) -> (B, T, D), its other inputs bound, e.g.
                ``partial(residual.sublayer.self_attention, attn_mask=m)``.

        Returns:
            (B, T, D).
        """
        if self.placement == "pre":
            return x + self.dropout(branch(self.norm(x, mask)))
        return self.norm(x + self.dropout(branch(x)), mask)


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
        h = streamed_linear(self.up, x)
        if isinstance(self.activation, nn.ReLU):  # one pass, and only its output kept for backward
            return streamed_linear(self.down, relu_dropout(h, self.dropout.p, self.training))
        return streamed_linear(self.down, self.dropout(self.activation(h)))


def _feed_forward(block: Residual, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A feed-forward residual block; the mask goes to the norm and to the sublayer (which packs)."""
    return block(x, mask, partial(block.sublayer, mask=mask))


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
        attention = self.self_attn.sublayer
        if packing is None:
            branch = partial(attention.self_attention, attn_mask=attn_mask)
        else:
            branch = partial(attention.packed_self_attention, packing=packing)
        x = self.self_attn(x, mask, branch)
        return _feed_forward(self.feed_forward, x, mask)


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
        if not (self.packable and packs_padding(x)):
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
    """Causal self-attention, cross-attention to a memory (left out when ``cross_attention`` is False:
    a language model's layer), feed-forward."""

    def __init__(self, config: TransformerConfig, cross_attention: bool = True):
        super().__init__()
        self.self_attn = _residual(_attention(config), config)
        self.cross_attn = _residual(_attention(config), config) if cross_attention else None
        self.feed_forward = _residual(FeedForward(config), config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        self_mask: torch.Tensor,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor | None,
        caches: tuple[KVCache, KVCache] | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, U, D) -> (B, U, D), and the cross-attention probabilities (B, H, U, S) or None.

        ``self_mask`` and ``memory_mask`` are attention masks (see :class:`MultiHeadAttention`);
        ``caches`` holds this layer's self- and cross-attention keys/values. A layer without
        cross-attention takes no memory (None).
        """
        self_cache, cross_cache = caches if caches is not None else (None, None)
        branch = partial(self.self_attn.sublayer.self_attention, attn_mask=self_mask, cache=self_cache)
        x = self.self_attn(x, mask, branch)
        if self.cross_attn is None:
            return _feed_forward(self.feed_forward, x, mask), None
        attention, weights = self.cross_attn.sublayer, None

        def cross(h: torch.Tensor) -> torch.Tensor:  # the residual takes a tensor; keep the weights
            nonlocal weights
            y, weights = attention.cross_attention(h, memory, memory_mask, cross_cache, need_weights)
            return y

        x = self.cross_attn(x, mask, cross)
        return _feed_forward(self.feed_forward, x, mask), weights


class Decoder(nn.Module):
    """Stack of causal self-attention + cross-attention layers over embedded inputs.

    With ``cross_attention=False`` the layers have no cross-attention and the stack takes no memory
    (``memory=None``): the decoder-only stack of a language model.
    """

    def __init__(self, config: TransformerConfig, cross_attention: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, cross_attention) for _ in range(config.num_layers))
        self.final_norm = _final_norm(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor | None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Decode positions ``cache.length ..`` given everything before them: :meth:`attend` without
        attention probabilities.

        Returns:
            (B, U, D).
        """
        return self.attend(x, mask, memory, memory_mask, cache)[0]

    def attend(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor | None,
        cache: DecoderCache | None = None,
        attention_layers: Sequence[int] = (),
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode positions ``cache.length ..``, and return the cross-attention of some layers.

        Args:
            x: (B, U, D) embedded inputs of the new positions.
            mask: (B, U) valid positions, or None when all are valid (incremental decoding).
            memory: (G, S, D) encoder output; G = B, or B = G × R when R beams share each row.
                None for a stack without cross-attention.
            memory_mask: (G, S) valid memory frames (None with no memory).
            cache: state of earlier positions; updated in place. None recomputes from scratch.
            attention_layers: indices of the layers whose cross-attention probabilities to return
                (negative ones count from the end); they take the explicit, slower attention path.

        Returns:
            (B, U, D), and per listed layer, in order, probabilities (B, H, U, S): 0 on padded
            memory frames, summing to 1 over the valid ones.
        """
        wanted = [range(len(self.layers))[i] for i in attention_layers]  # IndexError when out of range
        past = cache.length if cache is not None else 0
        self_mask = self_attention_mask(x.shape[1], past, mask, x.device)
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        weights: dict[int, torch.Tensor | None] = {}
        for i, layer in enumerate(self.layers):
            caches = (cache.self_attn[i], cache.cross_attn[i]) if cache is not None else None
            x, weights[i] = layer(x, mask, self_mask, memory, cross_mask, caches, need_weights=i in wanted)
        return self.final_norm(x, mask), [weights[i] for i in wanted]


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
