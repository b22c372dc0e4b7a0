"""Conformer encoder (Gulati et al. 2020): self-attention and a depthwise convolution in every layer.

A layer is four residual modules and a norm: a half-step feed-forward block, multi-head self-attention
(absolute positions added by the model, or relative-position attention), the convolution module, a
second half-step feed-forward block, then a norm. The modules are :class:`Residual`s of the Transformer
stack, so norm kind and placement are decided where they are for it.

Padding cannot leak through the depthwise kernel: padded frames are zeroed before it, and the conv
module's norm (any kind) counts valid frames only. ``conv_norm_masked: false`` turns both off, as ESPnet,
NeMo and torchaudio do it, to measure what that costs (an utterance's output then depends on its batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.core.config import check_choice
from seq2seq.nn.attention import MultiHeadAttention
from seq2seq.nn.linear import make_linear
from seq2seq.nn.masking import Packing, packs_padding
from seq2seq.nn.norms import NormConfig, build_norm
from seq2seq.nn.positional import RelativePositionalEncoding
from seq2seq.nn.relative_attention import RelativePositionAttention
from seq2seq.nn.transformer import Encoder, FeedForward, Residual, TransformerConfig

PositionKind = Literal["absolute", "relative"]
EncoderKind = Literal["transformer", "conformer"]


@dataclass(frozen=True)
class ConformerConfig:
    """What a Conformer adds to a stack's :class:`TransformerConfig` (which gives layers, D, heads, FFN
    size and activation, dropout, the modules' norm and its placement).

    Attributes:
        kernel_size: depthwise convolution kernel, odd ("same" padding); 31 in the paper, 15 for small
            models.
        conv_norm: norm after the depthwise convolution (batch norm in the paper); any kind.
        conv_norm_masked: zero padded frames before the depthwise convolution and give the conv norm the
            mask. False reproduces ESPnet/NeMo/torchaudio (statistics over padded frames, no zeroing, and
            no packing): it exists to measure the difference, not to train with.
        positions: ``absolute`` (the model adds sinusoids to the encoder input) or ``relative``
            (Transformer-XL self-attention over the distances between frames; nothing is added).
    """

    kernel_size: int = 31
    conv_norm: NormConfig = field(default_factory=lambda: NormConfig(kind="batch"))
    conv_norm_masked: bool = True
    positions: PositionKind = "absolute"

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"conformer.kernel_size={self.kernel_size} must be odd and positive")
        check_choice("conformer.positions", self.positions, get_args(PositionKind))


class ConvolutionModule(nn.Module):
    """``pointwise (D -> 2D) -> GLU -> depthwise conv (k) -> norm -> Swish -> pointwise (D -> D)``.

    Pointwise convolutions are linear layers over ``(B, T, D)``. The module's dropout is its
    :class:`Residual`'s.
    """

    def __init__(self, config: TransformerConfig, conformer: ConformerConfig):
        super().__init__()
        d, k = config.d_model, conformer.kernel_size
        self.pointwise_in = make_linear(d, 2 * d, config.linear_norm)
        self.depthwise = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.norm = build_norm(conformer.conv_norm, d)
        self.pointwise_out = make_linear(d, d, config.linear_norm)
        self.masked = conformer.conv_norm_masked

    def forward(self, x: torch.Tensor, mask: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """x: (B, T, D), or (1, N, D) valid frames with ``packing``; mask: (B, T) -> x's shape.

        The depthwise convolution needs the padded layout: packed frames are unpacked around it (with
        zeros at padded positions) and the norm runs there too, so that per-utterance (instance)
        statistics stay possible.
        """
        h = F.glu(self.pointwise_in(x), dim=-1)
        if packing is not None:
            h = packing.unpack(h)
        elif self.masked:
            h = h * mask.unsqueeze(-1).to(h.dtype)
        if h.shape[1]:  # no frames at all (input shorter than the front-end's receptive field): nothing to do
            h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        h = self.norm(h, mask if self.masked else None)
        if packing is not None:
            h = packing.pack(h)
        return self.pointwise_out(F.silu(h))


class ConformerLayer(nn.Module):
    """One Conformer block::

        x ── ½ FFN ── self-attention ── convolution ── ½ FFN ── norm ── y

    each module inside a :class:`Residual` (pre-norm: ``x + dropout(module(norm(x)))``). The closing
    norm is the block's in pre-norm stacks; post-norm residuals already end in one, so there it is none.
    """

    def __init__(self, config: TransformerConfig, conformer: ConformerConfig):
        super().__init__()
        kind = RelativePositionAttention if conformer.positions == "relative" else MultiHeadAttention
        attention = kind(config.d_model, config.num_heads, config.attention_dropout, config.linear_norm)
        self.first_feed_forward = _residual(FeedForward(config), config)
        self.self_attn = _residual(attention, config)
        self.convolution = _residual(ConvolutionModule(config, conformer), config)
        self.second_feed_forward = _residual(FeedForward(config), config)
        closing = config.norm if config.placement == "pre" else NormConfig(kind="none")
        self.final_norm = build_norm(closing, config.d_model)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        attn_mask: torch.Tensor,
        packing: Packing | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D), or (1, N, D) valid frames with ``packing``; mask: (B, T) valid frames;
        attn_mask: (B, 1, 1, T); positions: (2T - 1, D) distance sinusoids, None for absolute ones."""
        frames = mask if packing is None else None  # what norms and feed-forward blocks are given
        x = _feed_forward(self.first_feed_forward, x, frames)
        x = self.self_attn(x, frames, self._attention(attn_mask, packing, positions))
        x = self.convolution(x, frames, partial(self.convolution.sublayer, mask=mask, packing=packing))
        x = _feed_forward(self.second_feed_forward, x, frames)
        return self.final_norm(x, frames)

    def _attention(
        self, attn_mask: torch.Tensor, packing: Packing | None, positions: torch.Tensor | None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        attention = self.self_attn.sublayer
        if positions is not None:
            if packing is None:
                return partial(attention.relative_self_attention, positions=positions, attn_mask=attn_mask)
            return partial(attention.packed_relative_self_attention, packing=packing, positions=positions)
        if packing is None:
            return partial(attention.self_attention, attn_mask=attn_mask)
        return partial(attention.packed_self_attention, packing=packing)


def _feed_forward(block: Residual, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A macaron feed-forward block: the residual adds half its output (the sublayer packs on CPU)."""
    return block(x, mask, lambda h: 0.5 * block.sublayer(h, mask))


def _residual(sublayer: nn.Module, config: TransformerConfig) -> Residual:
    return Residual(sublayer, build_norm(config.norm, config.d_model), config.placement, config.dropout)


class ConformerEncoder(nn.Module):
    """Stack of Conformer blocks over embedded inputs; the same call as :class:`Encoder`.

    On CPU the valid frames run through the stack packed (:class:`Packing`), as in :class:`Encoder`:
    feed-forward blocks, projections, residual sums and per-frame norms skip padding, attention runs per
    utterance, and only the depthwise convolution and its norm see the padded layout. Not with instance
    norm in the modules (per-utterance statistics) nor with ``conv_norm_masked: false`` (whose point is
    to compute on padding).

    Args:
        config: the stack's shape (layers, D, heads, FFN, dropout, module norm, placement).
        conformer: convolution module and positions.
    """

    def __init__(self, config: TransformerConfig, conformer: ConformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(ConformerLayer(config, conformer) for _ in range(config.num_layers))
        relative = conformer.positions == "relative"
        self.relative_positions = RelativePositionalEncoding(config.d_model) if relative else None
        self.packable = config.norm.kind != "instance" and conformer.conv_norm_masked

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) True on valid frames -> (B, T, D).

        Padded outputs are 0 when packed; valid ones are what the padded computation gives.
        """
        positions = None
        if self.relative_positions is not None:
            positions = self.relative_positions(x.shape[1], x.dtype)
        attn_mask = mask[:, None, None, :]
        if not self._packs(x, mask):
            for layer in self.layers:
                x = layer(x, mask, attn_mask, None, positions)
            return x
        packing = Packing(mask)
        x = packing.pack(x)
        for layer in self.layers:
            x = layer(x, mask, attn_mask, packing, positions)
        return packing.unpack(x)

    def _packs(self, x: torch.Tensor, mask: torch.Tensor) -> bool:
        if not (self.packable and packs_padding(x)):
            return False
        return bool(mask.any()) and not bool(mask.all())


def check_encoder(kind: str, config: TransformerConfig, conformer: ConformerConfig) -> None:
    """The checks a model config makes of its encoder choice (ASR and text2text share them)."""
    check_choice("encoder_kind", kind, get_args(EncoderKind))
    groups = conformer.conv_norm.groups
    if kind == "conformer" and conformer.conv_norm.kind == "group" and config.d_model % groups:
        raise ValueError(f"conformer.conv_norm.groups={groups} must divide encoder.d_model={config.d_model}")


def build_encoder(kind: str, config: TransformerConfig, conformer: ConformerConfig) -> nn.Module:
    """An :class:`Encoder` or a :class:`ConformerEncoder`: the same call, ``(x, mask) -> x``."""
    return ConformerEncoder(config, conformer) if kind == "conformer" else Encoder(config)


def adds_absolute_positions(kind: str, conformer: ConformerConfig) -> bool:
    """Whether the model adds sinusoids to the encoder input (not for relative-position attention)."""
    return kind != "conformer" or conformer.positions == "absolute"
