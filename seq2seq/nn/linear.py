"""Linear layers with an optional weight parametrization (weight or spectral normalization)."""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn
from torch.nn.utils import parametrizations

LinearNorm = Literal["none", "weight", "spectral"]
LINEAR_NORMS: tuple[str, ...] = get_args(LinearNorm)


def make_linear(
    in_features: int, out_features: int, linear_norm: str = "none", bias: bool = True
) -> nn.Linear:
    """``nn.Linear`` reparametrized by weight norm (Salimans & Kingma 2016) or spectral norm (Miyato 2018)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    match linear_norm:
        case "none":
            return layer
        case "weight":
            return parametrizations.weight_norm(layer)
        case "spectral":
            return parametrizations.spectral_norm(layer)
    raise ValueError(f"linear_norm={linear_norm!r} is not valid; choose one of {', '.join(LINEAR_NORMS)}")
