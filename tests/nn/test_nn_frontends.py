"""Convolutional subsampling: exact output lengths, short inputs, padding."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.frontends import SUBSAMPLING_LAYERS, Conv2dSubsampling, conv_output_length
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig

F_BINS, D = 16, 8
MAX_LEN = 45


def frontend(factor: int, norm: str = "none") -> Conv2dSubsampling:
    torch.manual_seed(0)
    return Conv2dSubsampling(F_BINS, D, factor, channels=4, norm=NormConfig(kind=norm, groups=2)).eval()


def minimum_length(factor: int) -> int:
    """Shortest input giving one output frame, from the layer table."""
    length = 1
    for kernel, stride in reversed(SUBSAMPLING_LAYERS[factor]):
        length = (length - 1) * stride + kernel
    return length


@pytest.mark.parametrize("factor", [4, 6, 8])
@torch.no_grad()
def test_output_lengths_match_the_frames_the_convs_produce(factor):
    module = frontend(factor)
    expected_min = {4: 7, 6: 11, 8: 15}[factor]
    assert minimum_length(factor) == expected_min
    for length in range(MAX_LEN):
        y, out_len = module(torch.randn(1, length, F_BINS), torch.tensor([length]))
        frames = y.shape[1]
        assert int(out_len) == frames == int(module.output_lengths(torch.tensor([length]))), length
        assert (frames == 0) == (length < expected_min), length
        assert y.shape == (1, frames, D)
    # the formula is the closed form of the convolution arithmetic
    lengths = torch.arange(200)
    approx = lengths // factor
    assert ((approx - module.output_lengths(lengths)).abs() <= 3).all()


@pytest.mark.parametrize("factor", [4, 6, 8])
@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@torch.no_grad()
def test_batched_lengths_and_valid_frames_match_single_inputs(factor, norm):
    module = frontend(factor, norm)
    lengths = torch.tensor([MAX_LEN, 3, 0, 20, minimum_length(factor)])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), MAX_LEN, F_BINS, generator=g)
    x = x * lengths_to_mask(lengths, MAX_LEN).unsqueeze(-1)  # models zero padded features first
    y, out_len = module(x, lengths)
    assert torch.equal(out_len, module.output_lengths(lengths))
    assert y.shape[1] == int(out_len.max())
    assert torch.isfinite(y).all()
    for b, length in enumerate(lengths.tolist()):
        single, single_len = module(x[b : b + 1, :length], lengths[b : b + 1])
        assert int(single_len) == int(out_len[b])
        torch.testing.assert_close(y[b, : int(out_len[b])], single[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_all_too_short_batch_trains_without_nan(norm):
    module = frontend(4, norm).train()
    x = torch.randn(2, 2, F_BINS, requires_grad=True)  # shorter than the first kernel
    y, out_len = module(x, torch.tensor([2, 1]))
    assert y.shape == (2, 0, D) and out_len.tolist() == [0, 0]
    y.sum().backward()
    for name, buffer in module.named_buffers():
        assert torch.isfinite(buffer).all(), name
    running = [b for n, b in module.named_buffers() if n.endswith("running_var")]
    assert running and all(torch.equal(b, torch.ones_like(b)) for b in running)  # nothing to learn from


def test_conv_output_length_never_negative():
    lengths = torch.tensor([0, 1, 2, 3, 4, 5])
    assert conv_output_length(lengths, 3, 2).tolist() == [0, 0, 0, 1, 1, 2]
    assert conv_output_length(lengths, 5, 3).tolist() == [0, 0, 0, 0, 0, 1]
