"""Why normalization helps: internal covariate shift and loss-landscape probes (plain PyTorch, no Lightning).

Every probe evaluates the loss of one batch at perturbed weights and puts everything back afterwards, so
a training run that probes follows the same trajectory as one that does not:

- **Internal covariate shift** (Santurkar et al. 2018, Definition 2.1): for each layer i, ``G`` is the
  gradient of its weights and ``G'`` the same gradient after every layer before i has taken its update on
  the same batch; reported as ``||G - G'||`` and ``cos(G, G')``.
- **Loss landscape**: the loss after a step ``-eta * s * grad`` for each ``s`` of ``scales`` (``eta`` the
  current learning rate): the min-max band over the steps.
- **Gradient predictiveness**: ``||grad(x) - grad(x')||`` along those steps (min and max).
- **Effective beta-smoothness**: ``max_s ||grad(x) - grad(x')|| / ||x - x'||``.
- **Batch versus running statistics** of the batch-statistic norms (PowerNorm paper, Shen et al. 2020):
  ``(1/d) ||mu_B - mu||`` and ``(1/d) ||sigma2_B - sigma2||``.

The landscape steps are plain SGD steps along the raw gradient, as in Santurkar et al. The ICS update is
by default also an SGD step of the current learning rate (no Adam moments, no clipping); with
:func:`adamw_update` it is the exact step the run's Adam(W) would take now (moments, bias correction,
decoupled weight decay, gradient clipping), computed on copies. The optimizer and its state are never
touched. Before every
forward pass the buffers (norm running statistics, PowerNorm's backward estimate) and the random number
generators are reset to their values at the start of the probe, so every evaluation sees the same dropout
and SpecAugment masks: the loss is a deterministic function of the weights, and those masks are the ones
the training step that follows draws.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from seq2seq.nn.norms import BatchRenorm, MaskedBatchNorm, PowerNorm, _global_moments, _zero_padding

Layer = tuple[str, list[nn.Parameter]]
STATISTIC_NORMS = (MaskedBatchNorm, BatchRenorm, PowerNorm)  # instance norm's statistics are per utterance


@dataclass
class RngState:
    """The torch (CPU and CUDA), Python and NumPy generators' states, to put back exactly."""

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None
    python: object
    numpy: dict

    @classmethod
    def capture(cls) -> RngState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda, random.getstate(), np.random.get_state())

    def restore(self) -> None:
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state_all(self.torch_cuda)
        random.setstate(self.python)
        np.random.set_state(self.numpy)


class ModuleState:
    """Copies of a module's parameters and buffers; ``restore`` writes them back bit for bit."""

    def __init__(self, module: nn.Module):
        self.params = [(p, p.detach().clone()) for p in module.parameters()]
        self.buffers = [(b, b.detach().clone()) for b in module.buffers()]

    @torch.no_grad()
    def restore_buffers(self) -> None:
        for buffer, saved in self.buffers:
            buffer.copy_(saved)

    @torch.no_grad()
    def restore(self) -> None:
        for param, saved in self.params:
            param.copy_(saved)
        self.restore_buffers()


def layer_groups(module: nn.Module, prefix: str = "") -> list[Layer]:
    """The module's layers in registration order: each ``ModuleList``/``Sequential`` entry is one layer,
    any other child with trainable parameters is one (descended into when it holds such a list)."""
    layers: list[Layer] = []
    direct = [p for p in module.parameters(recurse=False) if p.requires_grad]
    if direct:
        layers.append((prefix.rstrip(".") or "root", direct))
    for name, child in module.named_children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            for index, entry in child.named_children():
                params = [p for p in entry.parameters() if p.requires_grad]
                if params:
                    layers.append((f"{prefix}{name}.{index}", params))
        elif any(isinstance(m, (nn.ModuleList, nn.Sequential)) for m in child.modules()):
            layers += layer_groups(child, f"{prefix}{name}.")
        elif any(p.requires_grad for p in child.parameters()):
            layers.append((f"{prefix}{name}", [p for p in child.parameters() if p.requires_grad]))
    return layers


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class Probe:
    """Evaluates ``loss_fn`` (one batch, fixed masks) at perturbed weights of ``module``.

    Args:
        module: owns every parameter and buffer the loss depends on.
        loss_fn: the scalar loss of the probed batch at the current weights.
        layers: the ICS layers in forward order (default :func:`layer_groups` of ``module``).
    """

    def __init__(
        self, module: nn.Module, loss_fn: Callable[[], torch.Tensor], layers: list[Layer] | None = None
    ):
        self.module, self.loss_fn = module, loss_fn
        self.layers = layers if layers is not None else layer_groups(module)
        self.params = [p for _, group in self.layers for p in group]
        self.rng = RngState.capture()
        self.state = ModuleState(module)
        self.x0 = [p.detach().clone() for p in self.params]

    def gradient(self) -> tuple[float, list[torch.Tensor]]:
        """Loss and gradient at the current weights, buffers and generators reset first."""
        self.state.restore_buffers()
        self.rng.restore()
        loss = self.loss_fn()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return float(loss.detach()), [
            torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)
        ]

    @torch.no_grad()
    def move(self, grads: Sequence[torch.Tensor], step: float, only: range | None = None) -> None:
        """Weights ``x0 - step * grad`` (for the parameters with indices in ``only``, all by default)."""
        for i in only if only is not None else range(len(self.params)):
            self.params[i].copy_(self.x0[i] - step * grads[i])

    def finish(self) -> None:
        """Everything back as it was before the probe: weights, buffers, generators."""
        self.state.restore()
        self.rng.restore()


Update = Callable[[list[nn.Parameter], list[torch.Tensor]], list[torch.Tensor]]


def sgd_update(lr: float) -> Update:
    """The displacement of a plain SGD step of rate ``lr``: ``-lr * grad``."""
    return lambda params, grads: [-lr * g for g in grads]


def adamw_update(optimizer: torch.optim.Optimizer, clip: float | None = None) -> Update:
    """The displacement ``optimizer.step()`` (Adam or AdamW) would make now, computed without touching its
    state: moments and step count advanced on copies, the gradient first clipped to total norm ``clip``
    as Lightning's ``gradient_clip_val`` does."""
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise ValueError(f"analysis.ics_update=optimizer needs Adam or AdamW, not {type(optimizer).__name__}")
    decoupled = isinstance(optimizer, torch.optim.AdamW)
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}

    @torch.no_grad()
    def update(params: list[nn.Parameter], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        scale = 1.0
        if clip:
            scale = min(1.0, clip / (float(flat(grads).norm()) + 1e-6))
        return [
            _adam_displacement(p, g * scale, groups[id(p)], optimizer.state.get(p, {}), decoupled)
            for p, g in zip(params, grads)
        ]

    return update


def _adam_displacement(p: torch.Tensor, g: torch.Tensor, group: dict, state: dict, decoupled: bool):
    """One Adam(W) step's change of ``p`` (torch's formulas: bias corrections, eps outside the root)."""
    lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    if decay and not decoupled:
        g = g + decay * p
    t = float(state["step"]) + 1 if "step" in state else 1.0
    m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
    v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
    denom = v.sqrt() / (1 - beta2**t) ** 0.5 + eps
    step = -(lr / (1 - beta1**t)) * m / denom
    return step - lr * decay * p if decoupled and decay else step


def internal_covariate_shift(
    probe: Probe, grads: list[torch.Tensor], updates: list[torch.Tensor]
) -> dict[str, dict[str, float]]:
    """Per layer after the first: ``||G - G'||`` and ``cos(G, G')`` (Santurkar et al. 2018, Def. 2.1);
    ``updates`` is the step every parameter takes (``x' = x + update``)."""
    bounds, start = [], 0
    for _, group in probe.layers:
        bounds.append(range(start, start + len(group)))
        start += len(group)
    result = {}
    for i in range(1, len(probe.layers)):
        probe.move(updates, -1.0, bounds[i - 1])  # the layers before i have now all taken their step
        _, shifted = probe.gradient()
        g, g_shift = flat([grads[j] for j in bounds[i]]), flat([shifted[j] for j in bounds[i]])
        cosine = torch.nn.functional.cosine_similarity(g, g_shift, dim=0, eps=1e-12)
        cosine = float(cosine.clamp(-1.0, 1.0))  # float32 rounding can pass 1 by ~1e-6
        result[probe.layers[i][0]] = {"l2": float((g - g_shift).norm()), "cos": cosine}
    probe.move(grads, 0.0)
    return result


def landscape(
    probe: Probe, loss0: float, grads: list[torch.Tensor], lr: float, scales: Sequence[float]
) -> dict[str, float]:
    """Loss band, gradient predictiveness and effective beta-smoothness along ``-lr * s * grad``."""
    g0 = flat(grads)
    g_norm = float(g0.norm())
    losses, changes, ratios = [], [], []
    for scale in scales:
        probe.move(grads, lr * scale)
        loss, moved = probe.gradient()
        change = float((flat(moved) - g0).norm())
        losses.append(loss)
        changes.append(change)
        ratios.append(change / max(lr * scale * g_norm, 1e-30))
    probe.move(grads, 0.0)
    return {
        "loss": loss0,
        "loss_min": min(losses),
        "loss_max": max(losses),
        "loss_band": max(losses) - min(losses),
        "grad_norm": g_norm,
        "grad_change_min": min(changes),
        "grad_change_max": max(changes),
        "beta_smoothness": max(ratios),
    }


@torch.no_grad()
def statistics_gap(norm: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> dict[str, float]:
    """``(1/d)||mu_B - mu||`` and ``(1/d)||sigma2_B - sigma2||`` of ``norm`` on input ``x`` (valid frames).

    ``sigma2_B`` is the biased batch variance (PowerNorm: the quadratic mean, and no mean term); ``mu`` and
    ``sigma2`` are the running statistics before this batch.
    """
    x = x.float()
    dim = x.shape[-1]
    if isinstance(norm, PowerNorm):
        xm = _zero_padding(x, mask)
        count = x.shape[0] * x.shape[1] if mask is None else mask.sum()
        quad = (xm * xm).sum((0, 1)) / max(float(count), 1.0)
        return {"var_gap": float((quad - norm.running_var).norm()) / dim}
    mean, var, _ = _global_moments(x, mask)
    return {
        "mean_gap": float((mean - norm.running_mean).norm()) / dim,
        "var_gap": float((var - norm.running_var).norm()) / dim,
    }


class StatisticsRecorder:
    """Forward pre-hooks on the batch-statistic norms that record each one's gap on its input."""

    def __init__(self, module: nn.Module):
        self.gaps: dict[str, dict[str, float]] = {}
        self.handles = [
            m.register_forward_pre_hook(self._hook(name))
            for name, m in module.named_modules()
            if isinstance(m, STATISTIC_NORMS)
        ]

    def _hook(self, name: str):
        def hook(norm, args):
            if norm.training and name not in self.gaps:  # the first call of the probe's first pass
                self.gaps[name] = statistics_gap(norm, args[0], args[1] if len(args) > 1 else None)

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def probe(
    module: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    lr: float,
    scales: Sequence[float],
    ics: bool = True,
    layers: list[Layer] | None = None,
    update: Update | None = None,
) -> dict:
    """Every measurement at the current weights of ``module``, which are left exactly as they were.

    ``update`` gives the ICS step from the gradient (default: SGD of rate ``lr``; see :func:`adamw_update`).
    """
    state = Probe(module, loss_fn, layers)
    recorder = StatisticsRecorder(module)
    try:
        loss0, grads = state.gradient()
        recorder.close()
        result = {"lr": lr, **landscape(state, loss0, grads, lr, scales)}
        if ics:
            updates = (update or sgd_update(lr))(state.params, grads)
            result["ics"] = internal_covariate_shift(state, grads, updates)
        result["norm_stats"] = recorder.gaps
    finally:
        recorder.close()
        state.finish()
    return result


def summary(result: dict) -> dict[str, float]:
    """The scalars of one probe (layer means) for a logger."""
    scalars = {k: v for k, v in result.items() if isinstance(v, float)}
    for key, metric in (("ics", "l2"), ("ics", "cos"), ("norm_stats", "mean_gap"), ("norm_stats", "var_gap")):
        values = [v[metric] for v in result.get(key, {}).values() if metric in v]
        if values:
            scalars[f"{key}_{metric}_mean"] = sum(values) / len(values)
    return scalars
