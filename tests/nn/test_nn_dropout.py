"""The integer-mask CPU dropout: its rate, its expectation, and a backward that uses the forward's mask."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_scale_and_expectation(p):
    torch.manual_seed(0)
    x = torch.full((400, 1000), 2.0)
    y = dropout(x, p, training=True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=3e-3)  # 4e5 draws: sd 8e-4
    assert torch.allclose(y[kept], torch.tensor(2.0 / (1 - p)))
    assert y.mean().item() == pytest.approx(2.0, abs=0.02)


def test_backward_passes_gradient_only_where_forward_kept():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    weights = torch.randn(64, 32)
    (y * weights).sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad, torch.where(kept, weights / 0.7, 0.0))


def test_module_is_identity_in_eval_and_seeded_in_train():
    layer = Dropout(0.2)
    x = torch.randn(10, 10)
    assert layer.eval()(x) is x
    layer.train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(a, layer(x))
    assert torch.equal(dropout(x, 0.0, True), x) and torch.count_nonzero(dropout(x, 1.0, True)) == 0
    with pytest.raises(ValueError, match="within"):
        Dropout(1.5)
