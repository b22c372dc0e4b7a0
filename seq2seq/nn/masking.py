"""The one lengths convention: boolean masks that are True on valid frames."""

from __future__ import annotations

import functools

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask of valid positions.

    Args:
        lengths: (B,) integer lengths.
        max_len: width of the mask; defaults to ``lengths.max()``.

    Returns:
        (B, T) bool tensor, True where ``t < lengths[b]``.
    """
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def packs_padding(x: torch.Tensor) -> bool:
    """Whether position-wise work on ``x`` skips padded frames: on CPU, where it saves their FLOPs. On
    GPUs the data-dependent shape (a device sync, a graph break under ``torch.compile``) costs more; an
    ONNX export needs the static padded layout."""
    exporting = torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    return x.device.type == "cpu" and not exporting


class Packing:
    """The valid frames of a padded ``(B, T)`` batch as one sequence ``(1, N)``, and the way back.

    Position-wise work (projections, feed-forward blocks, frame-wise norms, residual sums) then runs on
    valid frames only, and attention runs utterance by utterance on its span of the sequence: on a batch
    of 3-8 s utterances about a third of the padded frames, and half the padded attention, is padding.
    """

    def __init__(self, mask: torch.Tensor):
        """mask: (B, T) bool, True on the first ``length`` frames of each row."""
        self.batch, self.time = mask.shape
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # flat positions b * T + t
        self._mask = mask

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Frames of each non-empty utterance, in order: its span of the packed sequence (attention
        needs them; a feed-forward block that packs for itself does not, so they are counted lazily)."""
        return [length for length in self._mask.sum(1).tolist() if length]

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (1, N, ...): the valid frames, in batch then time order."""
        flat = x.reshape(self.batch * self.time, *x.shape[2:])
        return flat.index_select(0, self.index).unsqueeze(0)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N, ...) -> (B, T, ...), zeros at padded positions."""
        rows = x.squeeze(0)
        flat = rows.new_zeros(self.batch * self.time, *rows.shape[1:]).index_copy(0, self.index, rows)
        return flat.view(self.batch, self.time, *rows.shape[1:])
