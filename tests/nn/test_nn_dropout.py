"""The integer-mask CPU dropout: its rate, its expectation, and a backward that uses the forward's mask."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.dropout import Dropout, dropout, keep_mask, relu_dropout


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


def test_keep_mask_rate_uses_all_sixteen_bits():
    torch.manual_seed(4)
    keep = keep_mask(torch.Size([3, 100_001]), 0.25)  # odd size: the last 64-bit word is cut
    assert keep.shape == (3, 100_001) and keep.dtype == torch.bool
    assert keep.float().mean().item() == pytest.approx(0.75, abs=4e-3)  # sd 8e-4
    # every fourth 16-bit slice shares a word with the others, yet each keeps the same rate
    rates = keep.flatten()[: 4 * 75_000].view(-1, 4).float().mean(0)
    assert torch.allclose(rates, torch.full((4,), 0.75), atol=6e-3)


@pytest.mark.parametrize("p", [0.1, 0.4])
def test_relu_dropout_matches_relu_then_the_same_mask(p):
    torch.manual_seed(5)
    x = torch.randn(300, 200, requires_grad=True)
    y = relu_dropout(x, p, training=True)
    weights = torch.randn(300, 200)
    (y * weights).sum().backward()
    positive = x.detach() > 0
    kept_positive = y.detach() != 0
    assert not (kept_positive & ~positive).any()  # nothing survives where relu gave 0
    # among positive inputs the kept fraction is 1 - p, and kept values are scaled
    assert kept_positive[positive].float().mean().item() == pytest.approx(1 - p, abs=0.01)
    torch.testing.assert_close(y.detach()[kept_positive], x.detach()[kept_positive] / (1 - p))
    torch.testing.assert_close(x.grad, torch.where(kept_positive, weights / (1 - p), 0.0))
    x2 = x.detach().clone().requires_grad_()
    assert relu_dropout(x2, p, training=False).equal(torch.relu(x2))
