"""Positional encodings are added, change the model's output, grow on demand and honour offsets."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.positional import PositionalEncoding, ScaledPositionalEncoding, sinusoid_table
from seq2seq.nn.transformer import Encoder, TransformerConfig

D = 16


def test_table_values():
    table = sinusoid_table(50, D)
    position, i = 7, 3  # channel pair (6, 7) has frequency 10000^(-6/D)
    angle = position / 10000 ** (2 * i / D)
    assert table[position, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[position, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)
    assert (table[0, 0::2] == 0).all() and (table[0, 1::2] == 1).all()


@pytest.mark.parametrize("dim", [1, 7, 15])
def test_odd_dimension(dim):
    table = sinusoid_table(10, dim)
    assert table.shape == (10, dim)
    position = torch.arange(10.0)
    torch.testing.assert_close(table[:, 0], torch.sin(position))
    last = dim - 1  # an even channel: sine of the lowest frequency
    torch.testing.assert_close(table[:, last], torch.sin(position * 10000 ** (-last / dim)))


def test_encoding_is_added():
    pe = PositionalEncoding(D)
    x = torch.randn(2, 9, D)
    y = pe(x)
    assert (y - x * math.sqrt(D)).abs().max() > 0.5, "the encoding was computed but not added"
    torch.testing.assert_close(y, x * math.sqrt(D) + sinusoid_table(9, D))


def test_permuting_frames_changes_encoder_output_beyond_a_permutation():
    torch.manual_seed(0)
    config = TransformerConfig(num_layers=2, d_model=D, num_heads=2, ffn_dim=32, dropout=0.0)
    encoder, pe = Encoder(config).eval(), PositionalEncoding(D).eval()
    x = torch.randn(1, 10, D) * 0.3
    mask = lengths_to_mask(torch.tensor([10]))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        # control: without positions, self-attention is permutation-equivariant
        torch.testing.assert_close(encoder(x[:, perm], mask), encoder(x, mask)[:, perm], atol=1e-5, rtol=0)
        diff = encoder(pe(x[:, perm]), mask) - encoder(pe(x), mask)[:, perm]
    assert diff.abs().max() > 0.1


def test_scaled_encoding_alpha_changes_output_and_learns():
    pe = ScaledPositionalEncoding(D)
    x = torch.randn(2, 6, D)
    y1 = pe(x)
    torch.testing.assert_close(y1, x + sinusoid_table(6, D))  # no embedding scale: x + alpha * PE
    with torch.no_grad():
        pe.alpha.fill_(2.5)
    y2 = pe(x)
    torch.testing.assert_close(y2 - x, 2.5 * sinusoid_table(6, D).expand_as(x))
    (y2 * torch.randn_like(y2)).sum().backward()
    assert pe.alpha.grad is not None and pe.alpha.grad.abs().item() > 1e-3


@pytest.mark.parametrize("cls", [PositionalEncoding, ScaledPositionalEncoding])
def test_table_grows_for_long_inputs(cls):
    pe = cls(D, max_len=8)
    x = torch.randn(1, 40, D)
    y = pe(x)
    assert pe.table.shape[0] >= 40
    expected = x * math.sqrt(D) if cls is PositionalEncoding else x
    torch.testing.assert_close(y, expected + sinusoid_table(40, D))
    y_offset = pe(x[:, :5], offset=100)  # beyond the grown table too
    torch.testing.assert_close(y_offset - expected[:, :5], sinusoid_table(105, D)[None, 100:])


@pytest.mark.parametrize("cls", [PositionalEncoding, ScaledPositionalEncoding])
def test_offset_matches_slicing(cls):
    pe = cls(D)
    x = torch.randn(2, 12, D)
    full = pe(x)
    for start in (0, 1, 5, 11):
        torch.testing.assert_close(pe(x[:, start : start + 1], offset=start), full[:, start : start + 1])
    torch.testing.assert_close(pe(x[:, 4:9], offset=4), full[:, 4:9])


def test_asr_model_uses_both_encodings():
    """Zeroing a model's tables must change its outputs: the encodings are wired in, not just built."""
    from seq2seq.models.asr import ASRModel, ASRModelConfig

    torch.manual_seed(0)
    stack = TransformerConfig(num_layers=1, d_model=D, num_heads=2, ffn_dim=32, dropout=0.0)
    model = ASRModel(
        ASRModelConfig(vocab_size=8, input_dim=12, conv_channels=4, encoder=stack, decoder=stack)
    ).eval()
    features, lengths = torch.randn(1, 30, 12), torch.tensor([30])
    tokens = torch.randint(0, 8, (1, 5))
    with torch.no_grad():
        memory, memory_lengths = model.encode(features, lengths)
        logits = model.decode(tokens, memory, memory_lengths)
        model.decoder_position.table.zero_()
        assert (model.decode(tokens, memory, memory_lengths) - logits).abs().max() > 1e-3
        model.encoder_position.table.zero_()
        assert (model.encode(features, lengths)[0] - memory).abs().max() > 1e-3
