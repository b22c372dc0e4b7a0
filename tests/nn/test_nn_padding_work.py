"""The shortcuts that skip work on padding compute exactly what the padded path computes on valid frames."""

import copy

import pytest
import torch

from seq2seq.nn.frontends import Conv2dSubsampling
from seq2seq.nn.masking import Packing, lengths_to_mask
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.transformer import Encoder, FeedForward, TransformerConfig


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


@pytest.mark.parametrize("norm", ["layer", "rms", "group", "batch", "batch_renorm", "power"])
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_packed_encoder_matches_padded_encoder(norm, placement):
    """The stack run on packed valid frames gives the padded stack's outputs, gradients and statistics."""
    torch.manual_seed(0)
    config = TransformerConfig(
        num_layers=2,
        d_model=8,
        num_heads=2,
        ffn_dim=16,
        dropout=0.0,
        norm=NormConfig(kind=norm, groups=2),
        placement=placement,
    )
    packed = Encoder(config).train()
    padded = copy.deepcopy(packed)
    padded.packable = False
    x = torch.randn(3, 6, 8, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([6, 2, 5]))
    y, reference = packed(x, mask), padded(x, mask)
    torch.testing.assert_close(y[mask], reference[mask])
    assert y[~mask].abs().max() == 0
    weights = torch.randn(3, 6, 8)
    (grad,) = torch.autograd.grad((y * weights)[mask].sum(), x)
    (grad_reference,) = torch.autograd.grad((reference * weights)[mask].sum(), x)
    torch.testing.assert_close(grad, grad_reference)
    for buffer, reference_buffer in zip(packed.buffers(), padded.buffers()):
        torch.testing.assert_close(buffer, reference_buffer)  # running statistics


def test_instance_norm_encoder_keeps_the_padded_layout():
    assert not Encoder(TransformerConfig(norm=NormConfig(kind="instance"))).packable
    assert Encoder(TransformerConfig()).packable


@pytest.mark.parametrize("lengths", [[3, 1, 4], [3, 0, 4]])
def test_packing_round_trip(lengths):
    mask = lengths_to_mask(torch.tensor(lengths), 4)
    x = torch.randn(3, 4, 5)
    packing = Packing(mask)
    packed = packing.pack(x)
    assert packed.shape == (1, sum(lengths), 5)
    assert packing.lengths == [n for n in lengths if n]  # one attention span per non-empty utterance
    torch.testing.assert_close(packed[0], x[mask])
    torch.testing.assert_close(packing.unpack(packed), x * mask.unsqueeze(-1))
