"""Prenets and postnet of Transformer TTS (Li et al. 2019), borrowed from Tacotron 2 (Shen et al. 2018).

Every convolution here sees padded frames set to zero first, so a kernel that straddles the end of an
utterance reads silence, never whatever the batch put there; every norm is called as ``norm(x, mask)``
so batch statistics count real frames only.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.nn.dropout import Dropout
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig, build_norm


def always_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout that ignores train/eval mode; ``generator`` makes the mask reproducible.

    Args:
        x: any shape.
        p: drop probability in [0, 1).
        generator: random source; None uses the global one.
    """
    if p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    return x * keep / (1.0 - p)


class MaskedConv(nn.Module):
    """``Conv1d`` (same length) -> ``norm(x, mask)`` -> activation -> dropout over ``(B, T, C)`` inputs.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: odd kernel size, so the output keeps the input length.
        norm: norm after the convolution.
        activation: module applied after the norm (``nn.Identity`` for none).
        dropout: dropout probability (training only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        norm: NormConfig,
        activation: nn.Module,
        dropout: float,
    ):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel={kernel} must be odd so the convolution keeps the length")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.norm = build_norm(norm, out_channels)
        self.activation = activation
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C_in), mask: (B, T) True on valid frames -> (B, T, C_out), zero on padding."""
        x = x * mask.unsqueeze(-1).to(x.dtype)
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        y = self.dropout(self.activation(self.norm(y, mask)))
        return y * mask.unsqueeze(-1).to(y.dtype)


class EncoderPrenet(nn.Module):
    """Embedding -> N x [Conv1d, norm, ReLU, dropout] -> Linear to the model dimension.

    The convolutions give each character a view of its neighbours (context the Transformer would
    otherwise have to learn from scratch); the final linear lets the ReLU outputs (all >= 0) be centred
    before the positional encoding is added.

    Args:
        vocab_size: input symbols.
        embedding_dim: embedding size.
        channels: conv channels.
        d_model: output dimension D.
        num_layers: conv layers (3 in Tacotron 2).
        kernel: conv kernel size (5).
        norm: norm after each conv (batch norm in Tacotron 2).
        dropout: dropout after each conv.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        channels: int,
        d_model: int,
        num_layers: int = 3,
        kernel: int = 5,
        norm: NormConfig | None = None,
        dropout: float = 0.5,
    ):
        super().__init__()
        norm = norm or NormConfig(kind="batch")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.convs = nn.ModuleList(
            MaskedConv(embedding_dim if i == 0 else channels, channels, kernel, norm, nn.ReLU(), dropout)
            for i in range(num_layers)
        )
        self.proj = nn.Linear(channels if num_layers else embedding_dim, d_model)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens: (B, S) ids, lengths: (B,) -> (B, S, D), zero on padding."""
        mask = lengths_to_mask(lengths, tokens.shape[1])
        x = self.embedding(tokens)
        for conv in self.convs:
            x = conv(x, mask)
        return self.proj(x) * mask.unsqueeze(-1).to(x.dtype)


class DecoderPrenet(nn.Module):
    """N x [Linear, ReLU, dropout] -> Linear to the model dimension, dropout active at inference too.

    Tacotron 2 keeps this dropout on when synthesizing: the bottleneck noise stops the decoder from
    copying its previous frame and is what makes attention learn to move forward. Synthesis is therefore
    random; pass a ``generator`` (or seed torch) to reproduce it.

    Args:
        n_mels: mel bins of the previous frame.
        hidden: width of the bottleneck layers (256).
        d_model: output dimension D.
        num_layers: bottleneck layers (2).
        dropout: dropout probability (0.5).
        dropout_at_inference: keep dropout in eval mode (True, as in Tacotron 2); False makes
            synthesis deterministic.
    """

    def __init__(
        self,
        n_mels: int,
        hidden: int,
        d_model: int,
        num_layers: int = 2,
        dropout: float = 0.5,
        dropout_at_inference: bool = True,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(n_mels if i == 0 else hidden, hidden) for i in range(num_layers)
        )
        self.proj = nn.Linear(hidden if num_layers else n_mels, d_model)
        self.dropout = dropout
        self.dropout_at_inference = dropout_at_inference

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """frames: (B, U, n_mels) previous frames -> (B, U, D)."""
        p = self.dropout if (self.training or self.dropout_at_inference) else 0.0
        x = frames
        for layer in self.layers:
            x = always_dropout(torch.relu(layer(x)), p, generator)
        return self.proj(x)


class Postnet(nn.Module):
    """N x Conv1d (tanh on all but the last) predicting a residual that sharpens the decoder's mel.

    Args:
        n_mels: mel bins.
        channels: conv channels (512).
        num_layers: conv layers (5), at least 2.
        kernel: conv kernel size (5).
        norm: norm after each conv (batch norm in Tacotron 2).
        dropout: dropout after each conv (0.5).
    """

    def __init__(
        self,
        n_mels: int,
        channels: int = 512,
        num_layers: int = 5,
        kernel: int = 5,
        norm: NormConfig | None = None,
        dropout: float = 0.5,
    ):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"postnet num_layers={num_layers} must be >= 2")
        norm = norm or NormConfig(kind="batch")
        sizes = [n_mels] + [channels] * (num_layers - 1) + [n_mels]
        self.convs = nn.ModuleList(
            MaskedConv(
                sizes[i],
                sizes[i + 1],
                kernel,
                norm,
                nn.Tanh() if i < num_layers - 1 else nn.Identity(),
                dropout,
            )
            for i in range(num_layers)
        )

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """mel: (B, T, n_mels), lengths: (B,) -> mel + residual (B, T, n_mels), zero on padding."""
        mask = lengths_to_mask(lengths, mel.shape[1])
        x = mel
        for conv in self.convs:
            x = conv(x, mask)
        return (mel + x) * mask.unsqueeze(-1).to(mel.dtype)
