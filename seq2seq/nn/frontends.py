"""Convolutional subsampling of feature sequences with exact output lengths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn.masking import lengths_to_mask, packs_padding
from seq2seq.nn.norms import BATCH_STATISTIC_NORMS, NormConfig, build_norm

# Per conv layer: (kernel, stride). Kernel 3/stride 2 halves; kernel 5/stride 3 divides by three.
SUBSAMPLING_LAYERS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((3, 2), (3, 2)),
    6: ((3, 2), (5, 3)),
    8: ((3, 2), (3, 2), (3, 2)),
}


def conv_output_length(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Frames of an unpadded convolution: ``(L - kernel) // stride + 1`` (never below 0)."""
    return ((lengths - kernel).div(stride, rounding_mode="floor") + 1).clamp(min=0)


class Conv2dSubsampling(nn.Module):
    """Conv2d layers over (time, frequency) that shorten time by 4, 6 or 8, then project to D.

    Each conv is unpadded, so an output frame only reads input frames inside the utterance: outputs
    are padding-invariant. A configurable norm follows each conv; it sees the valid positions only.
    On CPU, unless that norm needs batch statistics, each utterance is convolved over its own frames
    only: no work on padding (about a third of a batch of 3-8 s utterances), and the per-utterance
    convolutions also run at a much higher rate than one convolution over the padded batch.

    Args:
        input_dim: feature bins F.
        d_model: output dimension D.
        factor: 4, 6 or 8.
        channels: conv channels.
        norm: normalization after each conv (per channel over valid time-frequency positions).
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int,
        factor: int = 4,
        channels: int = 256,
        norm: NormConfig | None = None,
    ):
        super().__init__()
        if factor not in SUBSAMPLING_LAYERS:
            raise ValueError(f"subsampling={factor} is not valid; choose one of 4, 6, 8")
        self.layers = SUBSAMPLING_LAYERS[factor]
        norm = norm or NormConfig(kind="none")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        in_channels, freq = 1, input_dim
        for kernel, stride in self.layers:
            self.convs.append(nn.Conv2d(in_channels, channels, kernel, stride))
            self.norms.append(build_norm(norm, channels))
            in_channels, freq = channels, (freq - kernel) // stride + 1
        if freq < 1:
            raise ValueError(f"input_dim={input_dim} is too small for {factor}x subsampling")
        self.activation = nn.ReLU()
        self.proj = nn.Linear(channels * freq, d_model)
        self.per_utterance = norm.kind not in BATCH_STATISTIC_NORMS
        self.normalize = norm.kind != "none"

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for kernel, stride in self.layers:
            lengths = conv_output_length(lengths, kernel, stride)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, F), lengths: (B,) -> (B, T', D), lengths (B,); padded output frames are 0 when
        utterances are convolved one by one."""
        if not self.per_utterance or x.shape[0] == 1 or not packs_padding(x):
            return self._forward_batch(x, lengths)
        frames = int(self.output_lengths(torch.tensor(x.shape[1])))
        pieces = [
            self._forward_batch(x[i : i + 1, :length], lengths[i : i + 1])[0]
            for i, length in enumerate(lengths.tolist())
        ]
        return torch.cat([_pad_time(y, frames) for y in pieces]), self.output_lengths(lengths)

    def _forward_batch(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.unsqueeze(1)
        for (kernel, stride), conv, norm in zip(self.layers, self.convs, self.norms):
            h = self._conv(conv, h, kernel, stride)
            lengths = conv_output_length(lengths, kernel, stride)
            if self.normalize:  # its layout change would copy the map and make the next conv slower
                h = self._norm(norm, h, lengths)
            h = self.activation(h)
        b, c, t, f = h.shape
        return self.proj(h.permute(0, 2, 1, 3).reshape(b, t, c * f)), lengths

    @staticmethod
    def _conv(conv: nn.Conv2d, h: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        """Unpadded conv over time; a map shorter than the kernel gives zero frames instead of an error."""
        time = h.shape[2]
        if time >= kernel:
            return conv(h)
        # run on a kernel-long map so shapes and autograd stay ordinary, then keep no frame of it
        frames = int(conv_output_length(torch.tensor(time), kernel, stride))
        return conv(F.pad(h, (0, 0, 0, kernel - time)))[:, :, :frames]

    @staticmethod
    def _norm(norm: nn.Module, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Apply a ``(x, mask)`` norm per channel to a (B, C, T, F) map, counting valid frames only."""
        b, c, t, f = h.shape
        mask = lengths_to_mask(lengths, t).unsqueeze(-1).expand(b, t, f).reshape(b, t * f)
        y = norm(h.permute(0, 2, 3, 1).reshape(b, t * f, c), mask)
        return y.reshape(b, t, f, c).permute(0, 3, 1, 2)


def _pad_time(y: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T', D) zero-padded at the end of time to ``frames``."""
    return F.pad(y, (0, 0, 0, frames - y.shape[1]))
