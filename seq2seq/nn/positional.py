"""Positional encodings added to (scaled) embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from seq2seq.nn.dropout import Dropout


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal table of Vaswani et al. 2017: sin on even channels, cos on odd.

    An odd ``dim`` has one more sine than cosine channel.
    """
    return _sinusoids(torch.arange(length, dtype=torch.float32), dim)


def _sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(len(positions), dim) sinusoids of (possibly negative) float positions."""
    position = positions.unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(len(positions), dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class PositionalEncoding(nn.Module):
    """``x * sqrt(D) + PE`` (embedding scale of the original Transformer), then dropout.

    Args:
        dim: model dimension D.
        dropout: dropout after adding the encoding.
        max_len: initial table length; it grows on demand.
        scale_input: multiply ``x`` by ``sqrt(D)`` (right for embeddings initialised with std
            ``D ** -0.5``; inputs already of unit scale are better left as they are).
        absolute: add the table; False leaves positions to the stack (relative-position attention,
            :class:`RelativePositionalEncoding`) and keeps only the input scale and dropout.
    """

    def __init__(
        self,
        dim: int,
        dropout: float = 0.0,
        max_len: int = 2048,
        scale_input: bool = True,
        absolute: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.absolute = absolute
        self.input_scale = math.sqrt(dim) if scale_input else 1.0
        self.dropout = Dropout(dropout)
        self.register_buffer("table", sinusoid_table(max_len, dim), persistent=False)

    def encoding(self, length: int, offset: int, device: torch.device) -> torch.Tensor:
        if offset + length > self.table.shape[0]:
            self.table = sinusoid_table(2 * (offset + length), self.dim).to(device)
        return self.table[offset : offset + length]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: (B, T, D), positions ``offset .. offset+T-1`` -> (B, T, D)."""
        if not self.absolute:
            return self.dropout(x * self.input_scale)
        pe = self.encoding(x.shape[1], offset, x.device).to(x.dtype)
        return self.dropout(x * self.input_scale + pe)


class ScaledPositionalEncoding(PositionalEncoding):
    """``x + alpha * PE`` with a learnable ``alpha`` (Transformer TTS, Li et al. 2019).

    The learnable scale lets the model balance positions against prenet outputs whose range differs
    between text and mel frames.
    """

    def __init__(self, dim: int, dropout: float = 0.0, max_len: int = 2048):
        super().__init__(dim, dropout, max_len)
        self.alpha = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        pe = self.encoding(x.shape[1], offset, x.device).to(x.dtype)
        return self.dropout(x + self.alpha * pe)


class RelativePositionalEncoding(nn.Module):
    """Sinusoids of the relative positions ``L-1, ..., 1, 0, -1, ..., 1-L`` for relative-position
    attention (Transformer-XL; ESPnet's "latest" ``RelPositionalEncoding``). No parameters.

    Args:
        dim: model dimension D.
        max_len: initial largest L; the table grows on demand.
    """

    def __init__(self, dim: int, max_len: int = 1024):
        super().__init__()
        self.dim = dim
        self.register_buffer("table", self._table(max_len), persistent=False)

    def _table(self, length: int) -> torch.Tensor:
        return _sinusoids(torch.arange(length - 1, -length, -1, dtype=torch.float32), self.dim)

    def forward(self, length: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(2 L - 1, D): row ``r`` encodes the distance ``i - j = L - 1 - r`` (query i, key j)."""
        longest = (self.table.shape[0] + 1) // 2
        if length > longest:
            self.table = self._table(2 * length).to(self.table.device)
            longest = 2 * length
        return self.table[longest - length : longest + length - 1].to(dtype)
