"""Linear layers with an optional weight parametrization (weight or spectral normalization)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

LinearNorm = Literal["none", "weight", "spectral"]
LINEAR_NORMS: tuple[str, ...] = get_args(LinearNorm)
# streamed_linear copies weights of at least STREAMED_MIN_BYTES for inputs of at most STREAMED_ROWS rows
# (0 rows: never).
STREAMED_ROWS = 16
STREAMED_MIN_BYTES = 2 << 20
# ... and only at this many intra-op threads or fewer: the gain was measured at one thread; at two it was
# within the round-to-round noise of batch-1 decoding (benchmarks/README.md, Deployment).
STREAMED_MAX_THREADS = 1


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


def streamed_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``; for a few rows without autograd, multiplied by a fresh copy of the weight.

    A batch-1 decoder step multiplies ~10 rows (the beams) by weights that are no longer in cache (the
    reference decoder has 40 MB of them, the L3 32 MB). MKL reads a cold weight in its packing order,
    which is slower than copying it sequentially and then multiplying by the copy, still in cache:
    8% less time per decoder step at 10 rows, the same values in the same layout, so the same result
    bit for bit; at 80 rows the copy no longer pays (``benchmarks/README.md``, Deployment), hence the
    bound, nor for weights small enough to stay in cache (the TTS decoder's 1 MB ones: 2% slower), nor
    with more than one thread.
    Plain ``nn.Linear`` only (not quantized, parametrized or hooked), never under tracing.
    """
    return F.linear(x, layer.weight.clone(), layer.bias) if _streams(layer, x) else layer(x)


def _streams(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`streamed_linear` takes the copy for this call (the bounds above)."""
    if torch.is_grad_enabled() or _tracing() or type(layer) is not nn.Linear:
        return False
    weight = layer.weight
    return (
        torch.get_num_threads() <= STREAMED_MAX_THREADS
        and x.numel() <= STREAMED_ROWS * x.shape[-1]
        and weight.numel() * weight.element_size() >= STREAMED_MIN_BYTES
        and not (layer._forward_hooks or layer._forward_pre_hooks)
    )


def _tracing() -> bool:
    """Whether the call is being traced, exported or compiled (a copy would be recorded as an op)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
