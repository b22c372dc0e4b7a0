"""The one lengths convention: boolean masks that are True on valid frames."""

from __future__ import annotations

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


def causal_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) bool mask, True where query t may attend to key s (s <= t)."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()
