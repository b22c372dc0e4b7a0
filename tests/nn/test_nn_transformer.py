"""Norm placement: the residual wiring of pre- and post-norm, and the final norm of pre-norm stacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import LayerNorm, NoNorm, NormConfig
from seq2seq.nn.transformer import Decoder, Encoder, Residual, TransformerConfig, self_attention_mask


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


class AddOne(nn.Module):
    """A stand-in norm whose effect is easy to trace; records the mask it was given."""

    def forward(self, x, mask=None):
        self.mask = mask
        return x + 1


def test_pre_norm_keeps_the_raw_input_on_the_residual_path():
    x = torch.randn(2, 3, 4)
    norm = AddOne()
    block = Residual(Double(), norm, "pre", dropout=0.0)
    y = block(x, torch.ones(2, 3, dtype=torch.bool), block.sublayer)
    torch.testing.assert_close(y, x + 2 * (x + 1))  # x + f(norm(x)), not norm(x) + f(norm(x))
    assert norm.mask is not None and norm.mask.all()


def test_post_norm_normalizes_the_residual_sum():
    x = torch.randn(2, 3, 4)
    block = Residual(Double(), AddOne(), "post", dropout=0.0)
    y = block(x, None, block.sublayer)
    torch.testing.assert_close(y, (x + 2 * x) + 1)  # norm(x + f(x))


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_final_norm_only_in_pre_norm_stacks(placement):
    config = TransformerConfig(num_layers=2, d_model=8, num_heads=2, ffn_dim=16, placement=placement)
    for stack in (Encoder(config), Decoder(config)):
        expected = LayerNorm if placement == "pre" else NoNorm
        assert isinstance(stack.final_norm, expected)
        norms = [m for m in stack.modules() if isinstance(m, LayerNorm)]
        per_layer = 2 if isinstance(stack, Encoder) else 3
        assert len(norms) == 2 * per_layer + (placement == "pre")


def test_norm_none_builds_identity_slots():
    config = TransformerConfig(num_layers=1, d_model=8, num_heads=2, ffn_dim=16, norm=NormConfig(kind="none"))
    encoder = Encoder(config).eval()
    assert not [m for m in encoder.modules() if isinstance(m, LayerNorm)]
    x = torch.randn(1, 4, 8)
    assert torch.isfinite(encoder(x, torch.ones(1, 4, dtype=torch.bool))).all()


def test_self_attention_mask_is_causal_and_masks_padding():
    mask = lengths_to_mask(torch.tensor([3, 1]), 3)
    allowed = self_attention_mask(3, 0, mask, None)
    assert allowed.shape == (2, 1, 3, 3)
    assert torch.equal(allowed[0, 0], torch.ones(3, 3, dtype=torch.bool).tril())
    assert allowed[1, 0, :, 1:].sum() == 0 and allowed[1, 0, :, 0].all()
    incremental = self_attention_mask(1, 4, None, None)
    assert incremental.shape == (1, 1, 1, 5) and incremental.all()


def test_decoder_is_causal():
    torch.manual_seed(0)
    config = TransformerConfig(num_layers=2, d_model=8, num_heads=2, ffn_dim=16, dropout=0.0)
    decoder = Decoder(config).eval()
    memory, memory_mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 8)  # the future (random: LayerNorm removes a constant shift)
    with torch.no_grad():
        a, b = decoder(x, None, memory, memory_mask), decoder(changed, None, memory, memory_mask)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-2
