"""``streamed_linear``: a few rows without autograd multiply by a copy of a large weight, giving exactly
``layer(x)``; everything else (gradients, many rows, small weights, quantized, parametrized or hooked
layers) is ``layer(x)`` itself."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.nn import linear
from seq2seq.nn.linear import make_linear, streamed_linear


class CountingClone:
    """Counts ``Tensor.clone`` calls: the copy is the streamed path's mark."""

    def __init__(self, monkeypatch):
        self.calls, original = 0, torch.Tensor.clone

        def clone(tensor, *args, **kwargs):
            self.calls += 1
            return original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "clone", clone)


def layer(norm: str = "none") -> nn.Module:
    torch.manual_seed(0)
    return make_linear(32, 48, norm)


@pytest.fixture(autouse=True)
def small_weights_stream(monkeypatch):
    """The test layers are tiny; let them take the copy (the real bound is a weight of 2 MB)."""
    monkeypatch.setattr(linear, "STREAMED_MIN_BYTES", 0)
    monkeypatch.setattr(linear, "STREAMED_MAX_THREADS", torch.get_num_threads())


@pytest.mark.parametrize("shape", [(10, 32), (2, 5, 32), (1, 1, 32)])
def test_few_rows_without_grad_take_a_copy_and_give_exactly_the_layer_output(shape, monkeypatch):
    fc, x = layer(), torch.randn(*shape)
    with torch.no_grad():
        expected = fc(x)
        counter = CountingClone(monkeypatch)
        got = streamed_linear(fc, x)
    assert counter.calls == 1 and got.shape == (*shape[:-1], 48)
    assert torch.equal(got, expected)


def test_many_rows_grad_and_tracing_use_the_layer(monkeypatch):
    fc = layer()
    counter = CountingClone(monkeypatch)
    with torch.no_grad():
        streamed_linear(fc, torch.randn(linear.STREAMED_ROWS + 1, 32))
    x = torch.randn(4, 32, requires_grad=True)
    y = streamed_linear(fc, x)  # autograd on: the layer itself, gradients flow
    y.sum().backward()
    assert counter.calls == 0 and fc.weight.grad is not None and x.grad is not None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated, still traces
        traced = torch.jit.trace(Streamed(fc), torch.randn(4, 32))
    assert "clone" not in str(traced.graph) and "linear" in str(traced.graph)


class Streamed(nn.Module):
    def __init__(self, fc: nn.Module):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return streamed_linear(self.fc, x)


@pytest.mark.parametrize("kind", ["weight", "quantized", "hooked"])
def test_other_layers_are_called_as_they_are(kind, monkeypatch):
    fc = layer("weight" if kind == "weight" else "none")
    if kind == "quantized":
        fc = torch.ao.nn.quantized.dynamic.Linear.from_float(
            _with_qconfig(fc), use_precomputed_fake_quant=False
        )
    calls = []
    if kind == "hooked":
        fc.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    x = torch.randn(3, 32)
    with torch.no_grad():
        expected = fc(x)
        counter = CountingClone(monkeypatch)
        got = streamed_linear(fc, x)
    assert counter.calls == 0 and torch.equal(got, expected)
    assert calls == ([(3, 48), (3, 48)] if kind == "hooked" else [])


def test_weights_below_the_size_bound_are_not_copied(monkeypatch):
    monkeypatch.setattr(linear, "STREAMED_MIN_BYTES", 2 << 20)
    small, big = make_linear(256, 1024), make_linear(256, 2048)  # 1 MB and 2 MB of float32
    counter = CountingClone(monkeypatch)
    with torch.no_grad():
        streamed_linear(small, torch.randn(10, 256))
        assert counter.calls == 0
        streamed_linear(big, torch.randn(10, 256))
    assert counter.calls == 1


def test_more_threads_than_the_bound_use_the_layer(monkeypatch):
    fc, x = layer(), torch.randn(2, 32)
    monkeypatch.setattr(linear, "STREAMED_MAX_THREADS", torch.get_num_threads() - 1)
    counter = CountingClone(monkeypatch)
    with torch.no_grad():
        assert torch.equal(streamed_linear(fc, x), fc(x))
    assert counter.calls == 0


def test_the_copy_can_be_turned_off(monkeypatch):
    fc, x = layer(), torch.randn(2, 32)
    monkeypatch.setattr(linear, "STREAMED_ROWS", 0)
    counter = CountingClone(monkeypatch)
    with torch.no_grad():
        assert torch.equal(streamed_linear(fc, x), F.linear(x, fc.weight, fc.bias))
    assert counter.calls == 0


def _with_qconfig(module: nn.Module) -> nn.Module:
    module.qconfig = torch.ao.quantization.default_dynamic_qconfig
    return module
