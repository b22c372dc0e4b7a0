"""The shortcuts that skip work on padding compute exactly what the padded path computes on valid frames."""

import pytest
import torch

from seq2seq.nn.frontends import Conv2dSubsampling
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.transformer import FeedForward, TransformerConfig


def test_feed_forward_packs_out_padding():
    torch.manual_seed(0)
    ff = FeedForward(TransformerConfig(d_model=8, num_heads=2, ffn_dim=16, dropout=0.0))
    x = torch.randn(3, 5, 8, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([5, 2, 4]))
    packed, full = ff(x, mask), ff(x)
    torch.testing.assert_close(packed[mask], full[mask])
    assert packed[~mask].abs().max() == 0  # padded outputs are 0
    (grad_packed,) = torch.autograd.grad(packed[mask].sum(), x)
    (grad_full,) = torch.autograd.grad(full[mask].sum(), x)
    torch.testing.assert_close(grad_packed, grad_full)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_frontend_per_utterance_matches_batch_path(norm):
    torch.manual_seed(0)
    frontend = Conv2dSubsampling(20, 16, 4, 4, NormConfig(kind=norm))
    assert frontend.per_utterance
    x, lengths = torch.randn(3, 30, 20), torch.tensor([30, 17, 5])
    y, y_lengths = frontend(x, lengths)
    reference, ref_lengths = frontend._forward_batch(x, lengths)
    assert y.shape == reference.shape and torch.equal(y_lengths, ref_lengths)
    mask = lengths_to_mask(y_lengths, y.shape[1])
    torch.testing.assert_close(y[mask], reference[mask])


def test_frontend_with_batch_statistics_keeps_the_batch_path():
    assert not Conv2dSubsampling(20, 16, 4, 4, NormConfig(kind="batch")).per_utterance
