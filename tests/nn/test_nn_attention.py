"""Attention probabilities are returned as values: they are probabilities, cost nothing when not asked
for, match cached decoding step by step, and leave no state behind on the modules."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.attention import KVCache, MultiHeadAttention
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.transformer import Decoder, DecoderCache, TransformerConfig

D, H = 8, 2


def inputs(batch: int = 3, steps: int = 4, seed: int = 0):
    """Queries (B, U, D), memory (B, S, D) and its valid frames (B, S), the padding filled with noise."""
    g = torch.Generator().manual_seed(seed)
    memory_lengths = torch.tensor([6, 2, 4, 5, 3, 6][:batch])
    x, memory = torch.randn(batch, steps, D, generator=g), torch.randn(batch, 6, D, generator=g)
    return x, memory, lengths_to_mask(memory_lengths, 6)


def attention() -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(D, H).eval()


@torch.no_grad()
def test_cross_attention_weights_are_probabilities_over_valid_memory():
    mha = attention()
    x, memory, memory_mask = inputs()
    attn_mask = memory_mask[:, None, None, :]
    y, weights = mha.cross_attention(x, memory, attn_mask, need_weights=True)
    fast, none = mha.cross_attention(x, memory, attn_mask)
    assert none is None
    assert weights.shape == (3, H, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, H, 4))
    padded = (~memory_mask)[:, None, None, :].expand_as(weights)
    assert weights[padded].abs().max() == 0
    torch.testing.assert_close(y, fast, atol=1e-6, rtol=0)  # the explicit path computes the same output


@torch.no_grad()
def test_cross_attention_cache_projects_the_memory_once():
    mha = attention()
    x, memory, memory_mask = inputs()
    attn_mask = memory_mask[:, None, None, :]
    expected, expected_weights = mha.cross_attention(x, memory, attn_mask, need_weights=True)
    cache = KVCache()
    first = mha.cross_attention(x[:, :2], memory, attn_mask, cache, need_weights=True)
    # a second call reads the cache: the memory it is given is not projected again
    rest = mha.cross_attention(x[:, 2:], torch.zeros_like(memory), attn_mask, cache, need_weights=True)
    assert cache.length == memory.shape[1]
    torch.testing.assert_close(torch.cat([first[0], rest[0]], 1), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat([first[1], rest[1]], 2), expected_weights, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cached", [False, True])
@torch.no_grad()
def test_beam_folded_weights_are_per_query_row(cached):
    """R query rows sharing a memory row get the (B, H, U, S) weights that R copies of that row give."""
    mha = attention()
    _, memory, memory_mask = inputs()
    beams = 2
    x = torch.randn(3 * beams, 4, D, generator=torch.Generator().manual_seed(1))
    copied = memory.repeat_interleave(beams, 0), memory_mask.repeat_interleave(beams, 0)
    expected, expected_weights = mha.cross_attention(
        x, copied[0], copied[1][:, None, None, :], need_weights=True
    )
    cache = KVCache() if cached else None
    y, weights = mha.cross_attention(x, memory, memory_mask[:, None, None, :], cache, need_weights=True)
    assert weights.shape == (3 * beams, H, 4, 6)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)


def test_attention_keeps_no_state_after_a_call():
    mha = attention()
    x, memory, memory_mask = inputs()
    mha.cross_attention(x, memory, memory_mask[:, None, None, :], need_weights=True)
    mha.self_attention(x)
    assert not hasattr(mha, "weights") and not hasattr(mha, "record_weights")
    assert not [name for name, value in vars(mha).items() if isinstance(value, torch.Tensor)]
    assert set(mha.state_dict()) == {
        f"{p}.{w}" for p in ("query", "key", "value", "out") for w in ("weight", "bias")
    }


def decoder(kind: str, placement: str) -> Decoder:
    torch.manual_seed(0)
    config = TransformerConfig(
        num_layers=2,
        d_model=D,
        num_heads=H,
        ffn_dim=16,
        dropout=0.0,
        norm=NormConfig(kind=kind),
        placement=placement,
    )
    return Decoder(config).eval()


@pytest.mark.parametrize("kind", ["layer", "batch"])
@pytest.mark.parametrize("placement", ["pre", "post"])
@torch.no_grad()
def test_decoder_attend_with_cache_equals_full_pass_step_by_step(kind, placement):
    model = decoder(kind, placement)
    x, memory, memory_mask = inputs(steps=5)
    layers = [1, 0]
    full, full_weights = model.attend(x, None, memory, memory_mask, attention_layers=layers)
    assert [w.shape for w in full_weights] == [(3, H, 5, 6)] * 2
    cache = DecoderCache.empty(len(model.layers))
    for t in range(x.shape[1]):
        hidden, weights = model.attend(x[:, t : t + 1], None, memory, memory_mask, cache, layers)
        torch.testing.assert_close(hidden, full[:, t : t + 1], atol=1e-5, rtol=0)
        for step, expected in zip(weights, full_weights, strict=True):
            torch.testing.assert_close(step, expected[:, :, t : t + 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x, None, memory, memory_mask), full, atol=1e-6, rtol=0)


@torch.no_grad()
def test_decoder_attend_returns_the_listed_layers_in_order():
    model = decoder("layer", "pre")
    x, memory, memory_mask = inputs()
    hidden, none = model.attend(x, None, memory, memory_mask)
    assert none == []
    _, (first, second) = model.attend(x, None, memory, memory_mask, attention_layers=[0, 1])
    _, (last, again) = model.attend(x, None, memory, memory_mask, attention_layers=[-1, 0])
    assert torch.equal(last, second) and torch.equal(again, first)
    assert not torch.equal(first, second)
    with pytest.raises(IndexError):
        model.attend(x, None, memory, memory_mask, attention_layers=[2])


def test_decoder_state_dict_keys_are_unchanged():
    keys = set(decoder("layer", "pre").state_dict())
    for key in ("layers.0.self_attn.sublayer.query.weight", "layers.1.cross_attn.sublayer.out.bias"):
        assert key in keys


@torch.no_grad()
def test_fused_projections_give_the_same_outputs_and_no_new_state():
    """fuse_projections (for int8) keeps the concatenated weights as modules: the same results bit for
    bit, and the state dict (what packages hold) is unchanged."""
    mha = attention()
    x, memory, memory_mask = inputs()
    attn_mask = memory_mask[:, None, None, :]
    keys = set(mha.state_dict())
    expected = mha.self_attention(x), mha.cross_attention(x, memory, attn_mask)[0]
    mha.fuse_projections()
    assert set(mha.fused) == {"query_key_value", "key_value"}
    assert mha.fused["key_value"].weight.shape == (2 * D, D)
    assert torch.equal(mha.self_attention(x), expected[0])
    assert torch.equal(mha.cross_attention(x, memory, attn_mask)[0], expected[1])
    assert set(MultiHeadAttention(D, H).state_dict()) == keys


def test_weight_normed_projections_are_not_fused():
    mha = MultiHeadAttention(D, H, linear_norm="weight")
    mha.fuse_projections()
    assert len(mha.fused) == 0
