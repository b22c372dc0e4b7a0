"""Batch-statistic norms: running statistics, evaluation mode, degenerate batches, autocast; linear norms."""

from __future__ import annotations

import copy

import pytest
import torch

from seq2seq.nn.linear import LINEAR_NORMS, make_linear
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import BATCH_STATISTIC_NORMS, NORM_KINDS, NormConfig, build_norm
from seq2seq.nn.transformer import Decoder, Encoder, TransformerConfig

D = 8
MU = torch.linspace(-2.0, 3.0, D)
SIGMA = torch.linspace(0.5, 2.0, D)


def build(kind: str, **overrides) -> torch.nn.Module:
    return build_norm(NormConfig(kind=kind, **overrides), D)


def gaussian_batch(g: torch.Generator, batch: int = 4, max_len: int = 40):
    lengths = torch.randint(max_len // 2, max_len + 1, (batch,), generator=g)
    x = MU + SIGMA * torch.randn(batch, max_len, D, generator=g)
    mask = lengths_to_mask(lengths, max_len)
    x = torch.where(mask.unsqueeze(-1), x, 1e4 * torch.randn(x.shape, generator=g))  # padding is garbage
    return x, mask


def test_every_kind_is_batch_statistic_or_framewise():
    assert set(BATCH_STATISTIC_NORMS) <= set(NORM_KINDS)
    for kind in NORM_KINDS:
        has_running = any("running" in k for k in build(kind).state_dict())
        assert has_running == (kind in BATCH_STATISTIC_NORMS), kind


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_running_statistics_converge_to_data_statistics(kind):
    g = torch.Generator().manual_seed(0)
    norm = build(kind, momentum=0.05).train()
    for _ in range(300):
        norm(*gaussian_batch(g))
    expected_var = MU**2 + SIGMA**2 if kind == "power" else SIGMA**2
    # instance norm averages per-utterance (biased) variances of >= 20 frames: up to 5% low
    rtol = 0.12 if kind == "instance" else 0.08
    torch.testing.assert_close(norm.running_var, expected_var, rtol=rtol, atol=0.0)
    if kind != "power":
        torch.testing.assert_close(norm.running_mean, MU, atol=0.1, rtol=0.0)
    assert int(norm.num_batches_tracked) == 300


@pytest.mark.parametrize("kind", ["batch", "batch_renorm"])
def test_training_output_is_normalized_over_valid_frames(kind):
    g = torch.Generator().manual_seed(1)
    norm = build(kind).train()
    x, mask = gaussian_batch(g)
    y = norm(x, mask)
    valid = y[mask]
    torch.testing.assert_close(valid.mean(0), torch.zeros(D), atol=1e-4, rtol=0)
    torch.testing.assert_close(valid.var(0, unbiased=False), torch.ones(D), atol=1e-3, rtol=0)
    assert (y[~mask] == 0).all(), "padded frames are zeroed"


def test_instance_norm_normalizes_each_utterance():
    g = torch.Generator().manual_seed(1)
    norm = build("instance").train()
    x, mask = gaussian_batch(g)
    y = norm(x, mask)
    for b in range(x.shape[0]):
        valid = y[b][mask[b]]
        torch.testing.assert_close(valid.mean(0), torch.zeros(D), atol=1e-4, rtol=0)
        torch.testing.assert_close(valid.var(0, unbiased=False), torch.ones(D), atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_eval_mode_uses_running_statistics(kind):
    g = torch.Generator().manual_seed(2)
    norm = build(kind)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(D, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(D, generator=g))
        norm.running_var.copy_(torch.rand(D, generator=g) + 0.2)
        mean = torch.randn(D, generator=g) if kind != "power" else torch.zeros(D)
        if kind != "power":
            norm.running_mean.copy_(mean)
    norm.eval()
    x, mask = gaussian_batch(g)
    y = norm(x, mask)
    expected = norm.weight * (x - mean) / torch.sqrt(norm.running_var + norm.eps) + norm.bias
    torch.testing.assert_close(y[mask], expected[mask], atol=1e-5, rtol=1e-5)
    # eval is per frame: a frame's output does not depend on the rest of the batch
    torch.testing.assert_close(norm(x[:1, :3], None), expected[:1, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_single_valid_frame_is_finite(kind):
    norm = build(kind).train()
    x = torch.randn(2, 5, D, requires_grad=True)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, 0] = True
    y = norm(x, mask)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    for name, buffer in norm.named_buffers():
        assert torch.isfinite(buffer).all(), name
    norm.eval()
    assert torch.isfinite(norm(x, mask)).all()


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_batch_without_valid_frames_leaves_running_statistics_alone(kind):
    norm = build(kind).train()
    before = {k: v.clone() for k, v in norm.state_dict().items() if "running" in k}
    y = norm(torch.randn(2, 5, D), torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(y).all()
    for key, value in before.items():
        torch.testing.assert_close(norm.state_dict()[key], value, msg=key)


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_statistics_are_float32_under_bfloat16_autocast(kind):
    g = torch.Generator().manual_seed(3)
    norm32 = build(kind).train()
    norm16 = copy.deepcopy(norm32)
    for _ in range(3):
        x, mask = gaussian_batch(g)
        x = (x * 10).bfloat16()  # what a linear layer hands over under autocast
        y32 = norm32(x.float(), mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = norm16(x, mask)
        assert y16.dtype == torch.bfloat16
    for (name, b32), (_, b16) in zip(norm32.named_buffers(), norm16.named_buffers()):
        assert b16.dtype == b32.dtype, name
        if b32.is_floating_point():
            assert b16.dtype == torch.float32, name
            torch.testing.assert_close(b16, b32, atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(y16.float(), y32, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("kind", BATCH_STATISTIC_NORMS)
def test_stack_runs_under_autocast(kind):
    config = TransformerConfig(
        num_layers=1, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, norm=NormConfig(kind=kind)
    )
    encoder = Encoder(config).train()
    x = torch.randn(2, 6, 16)
    mask = lengths_to_mask(torch.tensor([6, 3]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = encoder(x, mask)
    y.float().sum().backward()
    assert torch.isfinite(y.float()).all()
    for name, buffer in encoder.named_buffers():
        if buffer.is_floating_point():
            assert buffer.dtype == torch.float32, name


# ---------------------------------------------------------------- weight and spectral norm


@pytest.mark.parametrize("linear_norm", LINEAR_NORMS)
def test_linear_norm_stack_trains(linear_norm):
    config = TransformerConfig(
        num_layers=1, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, linear_norm=linear_norm
    )
    encoder, decoder = Encoder(config).train(), Decoder(config).train()
    parametrized = sum(hasattr(m, "parametrizations") for m in encoder.modules())
    assert parametrized == (0 if linear_norm == "none" else 6)  # 4 attention projections + 2 FFN
    mask = lengths_to_mask(torch.tensor([5, 3]))
    memory = encoder(torch.randn(2, 5, 16), mask)
    y = decoder(torch.randn(2, 4, 16), None, memory, mask)
    y.square().mean().backward()
    grads = [p.grad for p in [*encoder.parameters(), *decoder.parameters()]]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_weight_norm_preserves_initial_weight_and_separates_magnitude():
    torch.manual_seed(0)
    layer = make_linear(8, 12, "weight")
    original = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    g, v = original
    torch.testing.assert_close(layer.weight, g * v / v.norm(dim=1, keepdim=True))
    with torch.no_grad():
        g.mul_(2.0)
    torch.testing.assert_close(layer.weight.norm(dim=1), g.abs().squeeze(1))  # rows have norm |g|


def test_spectral_norm_bounds_largest_singular_value():
    torch.manual_seed(0)
    layer = make_linear(16, 32, "spectral").train()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10.0)
    x = torch.randn(4, 16)
    for _ in range(30):  # one power iteration per training forward
        layer(x)
    sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
    assert abs(float(sigma) - 1.0) < 1e-2, float(sigma)
    dense = make_linear(16, 32, "none")
    with torch.no_grad():
        dense.weight.mul_(10.0)
    assert torch.linalg.matrix_norm(dense.weight.detach(), ord=2) > 2.0  # control: unnormalised


def test_unknown_linear_norm_is_rejected():
    with pytest.raises(ValueError, match="linear_norm='batch'.*none, weight, spectral"):
        make_linear(4, 4, "batch")


@pytest.mark.parametrize("kind", ["layer", "rms", "group"])
def test_framewise_norms_match_their_definitions(kind):
    g = torch.Generator().manual_seed(4)
    norm = build(kind, groups=2)
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = 3 + 2 * torch.randn(2, 5, D, generator=g)
    params = dict(norm.named_parameters())
    weight = next(v for k, v in params.items() if k.endswith("weight"))
    bias = next((v for k, v in params.items() if k.endswith("bias")), torch.zeros(D))
    if kind == "rms":
        expected = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5) * weight
    else:
        chunks = x.unflatten(-1, (2, D // 2)) if kind == "group" else x.unsqueeze(-2)
        mean, var = chunks.mean(-1, keepdim=True), chunks.var(-1, unbiased=False, keepdim=True)
        expected = ((chunks - mean) / torch.sqrt(var + 1e-5)).flatten(-2) * weight + bias
    torch.testing.assert_close(norm(x, None), expected, atol=1e-5, rtol=1e-5)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    torch.testing.assert_close(norm(x, mask), expected)  # per frame: the mask plays no part


@pytest.mark.parametrize("kind", ["batch", "batch_renorm"])
def test_hand_written_backward_matches_autograd(kind):
    """The fused backward of batch norm (and renorm) equals autograd through the plain formula."""
    g = torch.Generator().manual_seed(5)
    norm = build(kind, renorm_warmup_steps=0, renorm_r_max=1.5, renorm_d_max=0.5).train()
    with torch.no_grad():
        norm.weight.copy_(torch.rand(D, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(D, generator=g))
        norm.running_mean.copy_(torch.randn(D, generator=g))
        norm.running_var.copy_(torch.rand(D, generator=g) + 0.1)
    running_mean, running_var = norm.running_mean.clone(), norm.running_var.clone()
    x, mask = gaussian_batch(g)
    upstream = torch.randn(x.shape, generator=g)

    x1 = x.clone().requires_grad_(True)
    (norm(x1, mask) * upstream).sum().backward()

    x2 = x.clone().requires_grad_(True)
    weight, bias = (
        norm.weight.detach().clone().requires_grad_(True),
        norm.bias.detach().clone().requires_grad_(True),
    )
    valid = x2[mask]
    mean, var = valid.mean(0), valid.var(0, unbiased=False)
    std = torch.sqrt(var + norm.eps)
    x_hat = (valid - mean) / std
    if kind == "batch_renorm":
        running_std = torch.sqrt(running_var + norm.eps)
        r = (std.detach() / running_std).clamp(1 / 1.5, 1.5)
        d = ((mean.detach() - running_mean) / running_std).clamp(-0.5, 0.5)
        assert (r != 1).any() and (d != 0).any()
        x_hat = x_hat * r + d
    ((x_hat * weight + bias) * upstream[mask]).sum().backward()

    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    assert (x1.grad[~mask] == 0).all()
    torch.testing.assert_close(norm.weight.grad, weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.bias.grad, bias.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["batch", "batch_renorm", "power", "instance"])
def test_a_non_finite_batch_leaves_running_statistics_unchanged(kind):
    norm = build_norm(NormConfig(kind=kind), 8).train()
    norm(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool))
    before = {k: v.clone() for k, v in norm.state_dict().items() if k.startswith("running")}
    poisoned = torch.randn(2, 5, 8)
    poisoned[0, 1, 3] = float("nan")
    norm(poisoned, torch.ones(2, 5, dtype=torch.bool))
    for key, value in before.items():
        assert torch.equal(norm.state_dict()[key], value), key
