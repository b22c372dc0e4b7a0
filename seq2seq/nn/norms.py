"""Normalization layers, all called as ``norm(x, mask)`` on ``(B, T, D)`` inputs.

Batch-statistic norms (``batch``, ``power``, ``batch_renorm``, ``instance``) count valid frames only,
compute their statistics in float32 even under autocast, keep running statistics for evaluation, and
all-reduce sums and counts when ``torch.distributed`` is initialised, so N processes see the statistics
of the global batch on any backend (gloo included: torch's SyncBatchNorm refuses CPU modules).
Frame-wise norms (``layer``, ``rms``, ``group``) ignore the mask: padding cannot reach them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from seq2seq.core.config import check_choice

NormKind = Literal["layer", "batch", "rms", "power", "group", "instance", "batch_renorm", "none"]
NORM_KINDS: tuple[str, ...] = get_args(NormKind)
BATCH_STATISTIC_NORMS = ("batch", "power", "batch_renorm", "instance")


@dataclass(frozen=True)
class NormConfig:
    """Which normalization to use and its hyper-parameters."""

    kind: NormKind = "layer"
    eps: float = 1e-5
    momentum: float = 0.1  # weight of the newest batch in running statistics (torch convention)
    groups: int = 8  # group norm: channel groups per frame
    renorm_r_max: float = 3.0  # batch renorm: clip of sigma_batch / sigma_running
    renorm_d_max: float = 5.0  # batch renorm: clip of (mu_batch - mu_running) / sigma_running
    renorm_warmup_steps: int = 500  # batch renorm acts as batch norm until running stats settle
    power_warmup_steps: int = 500  # PowerNorm divides by the batch's quadratic mean during warm-up
    power_backward_alpha: float = 0.9  # PowerNorm: weight of the gradient correction's running estimate

    def __post_init__(self) -> None:
        check_choice("norm.kind", self.kind, NORM_KINDS)
        if self.eps <= 0:
            raise ValueError(f"norm.eps={self.eps} must be > 0")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"norm.momentum={self.momentum} must be in (0, 1]")
        if self.groups < 1:
            raise ValueError(f"norm.groups={self.groups} must be >= 1")
        if self.renorm_r_max < 1 or self.renorm_d_max < 0:
            raise ValueError("norm.renorm_r_max must be >= 1 and norm.renorm_d_max >= 0")


def build_norm(config: NormConfig, dim: int) -> nn.Module:
    """Build the norm named by ``config.kind`` for ``dim`` channels."""
    match config.kind:
        case "layer":
            return LayerNorm(dim, config.eps)
        case "rms":
            return RMSNorm(dim, config.eps)
        case "group":
            return GroupNorm(dim, config.groups, config.eps)
        case "batch":
            return MaskedBatchNorm(dim, config.eps, config.momentum)
        case "batch_renorm":
            return BatchRenorm(dim, config)
        case "power":
            return PowerNorm(dim, config)
        case "instance":
            return MaskedInstanceNorm(dim, config.eps, config.momentum)
        case "none":
            return NoNorm()
    raise ValueError(f"unknown norm kind {config.kind!r}")


class NoNorm(nn.Module):
    """Identity with the norm signature; fills unused norm slots."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` with the ``(x, mask)`` signature (per frame: the mask is not needed)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): no centring, per frame."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class GroupNorm(nn.Module):
    """Group norm over channel groups of each frame (Wu & He 2018); ``groups`` must divide ``dim``."""

    def __init__(self, dim: int, groups: int, eps: float = 1e-5):
        super().__init__()
        if dim % groups:
            raise ValueError(f"norm.groups={groups} must divide the model dimension {dim}")
        self.norm = nn.GroupNorm(groups, dim, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # Each group of a frame is layer-normalised over its channels; torch's group-norm kernel treats
        # every frame as a sample of one spatial position and is many times slower on (B * T, D).
        groups, dim = self.norm.num_groups, x.shape[-1]
        y = F.layer_norm(x.unflatten(-1, (groups, dim // groups)), (dim // groups,), eps=self.norm.eps)
        return torch.addcmul(self.norm.bias, y.flatten(-2), self.norm.weight)


def _zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Padded frames set to 0.

    A multiply by the float mask: on CPU it is several times faster than ``where`` with a broadcast
    condition. Padding must therefore hold finite values (0 * inf is NaN); the models zero their padded
    inputs and every norm here zeroes padded outputs.
    """
    return x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)


def _count(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(1,) number of valid frames, in ``x``'s dtype."""
    if mask is None:
        return x.new_full((1,), x.shape[0] * x.shape[1])
    return mask.sum().to(x.dtype).reshape(1)


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (differentiable); identity when not distributed."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # ``import torch.distributed`` does not import its ``nn`` subpackage: name it explicitly.
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    return t


def _global_moments(
    x: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, biased variance (D,) and frame count (scalar, 0 when nothing is valid) of all processes.

    Sums of the zero-padded input and of its square (plain sums are far faster on CPU than ``var_mean``
    or ``vector_norm`` over the outer dimensions), combined across processes by one all-reduce.
    """
    xm = _zero_padding(x, mask)
    sums = torch.cat([xm.sum((0, 1)), (xm * xm).sum((0, 1)), _count(x, mask)])
    stats = global_sum(sums)
    dim = x.shape[-1]
    count = stats[-1]
    mean = stats[:dim] / count.clamp(min=1.0)
    var = (stats[dim : 2 * dim] / count.clamp(min=1.0) - mean * mean).clamp(min=0.0)
    return mean, var, count


class _RunningStatsNorm(nn.Module):
    """Shared state of the batch-statistic norms: affine parameters and running statistics."""

    def __init__(self, dim: int, eps: float, momentum: float):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def _update_running(
        self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor, bessel: bool = True
    ) -> None:
        """Fold batch statistics of ``count`` samples into the running ones (none when ``count`` is 0).

        ``var`` is biased; ``bessel`` stores it unbiased, as torch's batch norm does.
        """
        if bessel:
            var = var * count / (count - 1).clamp(min=1.0)
        # A batch of padding only, or one whose statistics are not finite (a NaN batch the training
        # guard will skip), leaves the running statistics as they were.
        keep = (count > 0) & torch.isfinite(mean).all() & torch.isfinite(var).all()
        self.running_mean.copy_(
            torch.where(keep, self.running_mean.lerp(mean.detach(), self.momentum), self.running_mean)
        )
        self.running_var.copy_(
            torch.where(keep, self.running_var.lerp(var.detach(), self.momentum), self.running_var)
        )
        self.num_batches_tracked += 1

    def _affine(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        shift: torch.Tensor,
        mask: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``x * scale + shift`` in one pass (normalisation and affine folded), padding zeroed."""
        y = torch.addcmul(shift, x, scale)
        # padding is zeroed so garbage there cannot reach attention or a later norm
        return _zero_padding(y, mask).to(dtype)

    def _eval_forward(self, x: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return self._affine(x, scale, self.bias - self.running_mean * scale, mask, dtype)


class _BatchNormFunction(torch.autograd.Function):
    """``y = weight * (r * x_hat + d) + bias`` (0 on padding), ``x_hat = (x - mean) * inv_std``.

    ``mean``, ``inv_std`` and ``count`` are the statistics of the valid frames of the global batch,
    computed without autograd; ``r`` and ``d`` are batch renorm's constants (None for plain batch norm).
    The backward is written out, the gradient through the batch statistics included, so a step costs a
    few passes over the data instead of an autograd node per elementwise operation. Its two channel sums
    are all-reduced, so each process gets the gradient of the global batch; weight and bias gradients stay
    local (data-parallel training sums those).
    """

    @staticmethod
    def forward(ctx, x, mask, weight, bias, mean, inv_std, count, r=None, d=None):
        gain = weight * inv_std if r is None else weight * r * inv_std
        shift = bias - mean * gain if d is None else bias + weight * d - mean * gain
        ctx.save_for_backward(x, mask, weight, mean, inv_std, count, r, d)
        return _zero_padding(torch.addcmul(shift, x, gain), mask)

    @staticmethod
    def backward(ctx, grad_y):
        x, mask, weight, mean, inv_std, count, r, d = ctx.saved_tensors
        g = _zero_padding(grad_y, mask)
        x_hat = torch.addcmul(-mean * inv_std, x, inv_std)
        sum_g, sum_g_xhat = g.sum((0, 1)), (g * x_hat).sum((0, 1))
        grad_weight = sum_g_xhat if r is None else r * sum_g_xhat + d * sum_g
        global_g, global_g_xhat = global_sum(torch.cat([sum_g, sum_g_xhat])).chunk(2)
        gain = weight * inv_std if r is None else weight * r * inv_std
        n = count.clamp(min=1.0)
        # dx = gain * (g - mean(g) - x_hat * mean(g * x_hat)), means over the valid frames of all processes
        grad_x = torch.addcmul(-gain * global_g / n, g, gain).addcmul_(x_hat, -gain * global_g_xhat / n)
        return _zero_padding(grad_x, mask), None, grad_weight, sum_g, None, None, None, None, None


class MaskedBatchNorm(_RunningStatsNorm):
    """Batch norm over the valid frames of the (global) batch."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()  # no copy when already float32
            if not self.training:
                return self._eval_forward(x, mask, dtype)
            with torch.no_grad():  # _BatchNormFunction differentiates through the statistics itself
                mean, var, count = _global_moments(x, mask)
            self._update_running(mean, var, count)
            inv_std = torch.rsqrt(var + self.eps)
            return _BatchNormFunction.apply(x, mask, self.weight, self.bias, mean, inv_std, count).to(dtype)


class BatchRenorm(_RunningStatsNorm):
    """Batch renormalization (Ioffe 2017): batch statistics corrected towards the running ones.

    ``x_hat = (x - mu_B) / sigma_B * r + d`` with ``r = sigma_B / sigma``, ``d = (mu_B - mu) / sigma``
    clipped and treated as constants, so training sees the same normalization as inference.
    """

    def __init__(self, dim: int, config: NormConfig):
        super().__init__(dim, config.eps, config.momentum)
        self.r_max, self.d_max = config.renorm_r_max, config.renorm_d_max
        self.warmup_steps = config.renorm_warmup_steps

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if not self.training:
                return self._eval_forward(x, mask, dtype)
            with torch.no_grad():
                mean, var, count = _global_moments(x, mask)
                inv_std = torch.rsqrt(var + self.eps)
                r = d = None
                if int(self.num_batches_tracked) >= self.warmup_steps:
                    running_std = torch.sqrt(self.running_var + self.eps)
                    r = (torch.reciprocal(inv_std) / running_std).clamp(1 / self.r_max, self.r_max)
                    d = ((mean - self.running_mean) / running_std).clamp(-self.d_max, self.d_max)
            self._update_running(mean, var, count)
            y = _BatchNormFunction.apply(x, mask, self.weight, self.bias, mean, inv_std, count, r, d)
            return y.to(dtype)


class MaskedInstanceNorm(_RunningStatsNorm):
    """Instance norm: each utterance normalised by its own valid frames, per channel.

    Running averages of the per-utterance statistics are kept and used in evaluation, which also keeps
    the norm causal there (a decoder cannot see future frames through its statistics at inference).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if not self.training:
                return self._eval_forward(x, mask, dtype)
            xm = _zero_padding(x, mask)
            frames = x.new_full((x.shape[0], 1), x.shape[1]) if mask is None else mask.sum(1, keepdim=True)
            count = frames.to(x.dtype).clamp(min=1.0)  # (B, 1)
            mean = xm.sum(1) / count
            var = (xm.square().sum(1) / count - mean * mean).clamp(min=0.0)
            present = (frames > 0).to(x.dtype)  # utterances without valid frames add nothing
            sums = global_sum(torch.cat([(mean * present).sum(0), (var * present).sum(0), present.sum(0)]))
            dim, n = x.shape[-1], sums[-1]
            self._update_running(sums[:dim] / n.clamp(min=1.0), sums[dim:-1] / n.clamp(min=1.0), n, False)
            scale = self.weight * torch.rsqrt(var.unsqueeze(1) + self.eps)  # (B, 1, D)
            return self._affine(x, scale, self.bias - mean.unsqueeze(1) * scale, mask, dtype)


class _PowerFunction(torch.autograd.Function):
    """PowerNorm's normalisation with its approximate backward (Shen et al. 2020, Algorithm 1).

    Forward divides by a quadratic mean ``psi`` (no centring). Backward replaces the exact gradient
    through the batch statistics by ``(g - (1 - alpha) * ema_gz * z) / psi`` and updates ``ema_gz``,
    a running estimate of ``mean(g * z)`` over the valid frames of all processes.
    """

    @staticmethod
    def forward(ctx, x, mask, scale, quad_mean, ema_gz, alpha):
        z = x * scale
        ctx.save_for_backward(z, mask, quad_mean, ema_gz)
        ctx.alpha = alpha
        return z

    @staticmethod
    def backward(ctx, grad_z):
        z, mask, quad_mean, ema_gz = ctx.saved_tensors
        approx = grad_z - (1 - ctx.alpha) * ema_gz * z
        with torch.no_grad():  # every process must update ema_gz alike: sum over the global batch
            stats = global_sum(torch.cat([_zero_padding(approx * z, mask).sum((0, 1)), _count(z, mask)]))
            ema_gz.add_(stats[:-1] / stats[-1].clamp(min=1.0))
        grad_x = _zero_padding(approx * torch.rsqrt(quad_mean), mask)
        return grad_x, None, None, None, None, None


class PowerNorm(_RunningStatsNorm):
    """PowerNorm (Shen et al. 2020): relaxed zero-mean, running quadratic mean, approximate backward.

    During ``power_warmup_steps`` the batch quadratic mean normalises; afterwards the running one does,
    so training and inference see the same scale.
    """

    def __init__(self, dim: int, config: NormConfig):
        super().__init__(dim, config.eps, config.momentum)
        self.warmup_steps = config.power_warmup_steps
        self.alpha = config.power_backward_alpha
        self.register_buffer("ema_gz", torch.zeros(dim))
        del self.running_mean  # no centring

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if not self.training:
                scale = self.weight * torch.rsqrt(self.running_var + self.eps)
                return self._affine(x, scale, self.bias, mask, dtype)
            with torch.no_grad():  # psi is a constant for autograd; _PowerFunction has its own backward
                xm = _zero_padding(x, mask)
                stats = global_sum(torch.cat([(xm * xm).sum((0, 1)), _count(x, mask)]))
            count = stats[-1]
            quad_mean = stats[:-1] / count.clamp(min=1.0) + self.eps
            warm = int(self.num_batches_tracked) < self.warmup_steps
            psi = quad_mean if warm else self.running_var + self.eps
            z = _PowerFunction.apply(x, mask, torch.rsqrt(psi), quad_mean, self.ema_gz, self.alpha)
            with torch.no_grad():
                keep = (count > 0) & torch.isfinite(quad_mean).all()
                updated = self.running_var.lerp(quad_mean - self.eps, self.momentum)
                self.running_var.copy_(torch.where(keep, updated, self.running_var))
                self.num_batches_tracked += 1
            return self._affine(z, self.weight, self.bias, mask, dtype)


def batch_statistic_norms(module: nn.Module) -> list[nn.Module]:
    """The norms inside ``module`` that keep running statistics (batch, batch_renorm, power, instance)."""
    return [m for m in module.modules() if isinstance(m, _RunningStatsNorm)]
