"""Incremental decoding with the explicit cache equals full recomputation, for every norm and placement."""

from __future__ import annotations

import pytest
import torch

from seq2seq.models.asr import ASRModel, ASRModelConfig
from seq2seq.nn.attention import KVCache
from seq2seq.nn.norms import NORM_KINDS, NormConfig, _RunningStatsNorm
from seq2seq.nn.transformer import DecoderCache, TransformerConfig

VOCAB = 11


def tiny_asr(kind: str, placement: str) -> ASRModel:
    torch.manual_seed(0)
    stack = TransformerConfig(
        num_layers=2,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        dropout=0.0,
        norm=NormConfig(kind=kind, groups=4),
        placement=placement,
    )
    model = ASRModel(
        ASRModelConfig(
            vocab_size=VOCAB, input_dim=12, subsampling=4, conv_channels=4, encoder=stack, decoder=stack
        )
    ).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # eval must use non-trivial running statistics
        for m in model.modules():
            if isinstance(m, _RunningStatsNorm):
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if hasattr(m, "running_mean"):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
    return model


def memory_and_tokens(model: ASRModel, batch: int = 3, steps: int = 7):
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([30, 19, 25][:batch])
    features = torch.randn(batch, 30, 12, generator=g)
    memory, memory_lengths = model.encode(features, lengths)
    tokens = torch.randint(0, VOCAB, (batch, steps), generator=g)
    return memory, memory_lengths, tokens


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("placement", ["pre", "post"])
@torch.no_grad()
def test_cached_decoding_equals_full_recomputation(kind, placement):
    model = tiny_asr(kind, placement)
    memory, memory_lengths, tokens = memory_and_tokens(model)
    full = model.decode(tokens, memory, memory_lengths)
    cache = model.new_cache()
    steps = []
    for t in range(tokens.shape[1]):
        assert cache.length == t
        steps.append(model.decode(tokens[:, t : t + 1], memory, memory_lengths, cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    # the cross-attention cache holds the projected memory once, not once per step
    assert all(kv.length == memory.shape[1] for kv in cache.cross_attn)


@torch.no_grad()
def test_cache_accepts_several_tokens_per_call():
    model = tiny_asr("layer", "pre")
    memory, memory_lengths, tokens = memory_and_tokens(model)
    full = model.decode(tokens, memory, memory_lengths)
    cache = model.new_cache()
    first = model.decode(tokens[:, :4], memory, memory_lengths, cache)
    rest = model.decode(tokens[:, 4:], memory, memory_lengths, cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("placement", ["pre", "post"])
@torch.no_grad()
def test_cache_select_reorders_rows(placement):
    model = tiny_asr("batch", placement)
    memory, memory_lengths, tokens = memory_and_tokens(model)
    cache = model.new_cache()
    for t in range(3):
        model.decode(tokens[:, t : t + 1], memory, memory_lengths, cache)
    order = torch.tensor([2, 0, 0, 1])  # reorder, duplicate (beam split) and keep every row once
    before = [kv.key.clone() for kv in cache.self_attn + cache.cross_attn]
    cache.select(order)
    for kv, key in zip(cache.self_attn + cache.cross_attn, before):
        torch.testing.assert_close(kv.key, key[order])
        assert kv.value.shape[0] == len(order)
    memory, memory_lengths, tokens = memory[order], memory_lengths[order], tokens[order]
    rest = [model.decode(tokens[:, t : t + 1], memory, memory_lengths, cache) for t in range(3, 6)]
    full = model.decode(tokens[:, :6], memory, memory_lengths)
    torch.testing.assert_close(torch.cat(rest, dim=1), full[:, 3:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("placement", ["pre", "post"])
@torch.no_grad()
def test_beams_sharing_memory_equal_copied_memory(placement):
    """R beams per utterance attending to one memory row give what R copies of that row give."""
    model = tiny_asr("layer", placement)
    memory, memory_lengths, _ = memory_and_tokens(model)
    beams = 4
    tokens = torch.randint(0, VOCAB, (3 * beams, 5), generator=torch.Generator().manual_seed(3))
    copied = memory.repeat_interleave(beams, 0), memory_lengths.repeat_interleave(beams, 0)
    expected = model.decode(tokens, *copied)
    torch.testing.assert_close(model.decode(tokens, memory, memory_lengths), expected, atol=1e-5, rtol=0)
    cache = model.new_cache()
    steps = [model.decode(tokens[:, t : t + 1], memory, memory_lengths, cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=0)
    assert all(kv.key.shape[0] == 3 for kv in cache.cross_attn)  # stored once per utterance
    with pytest.raises(ValueError, match="multiple"):
        model.decode(tokens[:5], memory, memory_lengths)


def test_kv_cache_select_on_empty_cache_is_a_no_op():
    kv = KVCache()
    kv.select(torch.tensor([0, 0]))
    assert kv.length == 0
    cache = DecoderCache.empty(2)
    cache.select(torch.tensor([1]))
    assert cache.length == 0
