"""The language model task: model equivalences, text data, training, perplexity, packages, bad input."""

from __future__ import annotations

import pytest
import torch

from seq2seq.core.text import EOS_ID, PAD_ID, SOS_ID
from seq2seq.models.lm import LanguageModel, LMModelConfig, lm_io
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.transformer import TransformerConfig


def tiny_lm(vocab: int = 12, placement: str = "pre", norm: str = "layer", seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    decoder = TransformerConfig(
        num_layers=2, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, placement=placement,
        norm=NormConfig(kind=norm),
    )  # fmt: skip
    return LanguageModel(LMModelConfig(vocab_size=vocab, decoder=decoder)).eval()


def _tokens(batch: int, length: int, vocab: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    body = torch.randint(5, vocab, (batch, length), generator=generator)
    return torch.cat([torch.full((batch, 1), SOS_ID), body], dim=1)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_lm_shapes_and_cached_incremental_equals_full_pass(placement):
    model = tiny_lm(placement=placement)
    tokens = _tokens(3, 7)
    full = model(tokens)
    assert full.shape == (3, 8, 12)
    cache = model.new_cache()
    steps = [model(tokens[:, :3], cache=cache)]  # a prefix at once, then one token at a time
    assert cache.length == 3
    for t in range(3, 8):
        steps.append(model(tokens[:, t : t + 1], cache=cache))
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_lm_cache_select_reorders_rows():
    model = tiny_lm()
    tokens = _tokens(3, 5)
    cache = model.new_cache()
    model(tokens[:, :4], cache=cache)
    order = torch.tensor([2, 0])
    cache.select(order)
    step = model(tokens[order, 4:5], cache=cache)
    torch.testing.assert_close(step, model(tokens[order])[:, 4:5], atol=1e-5, rtol=0)


def test_lm_padding_and_batch_composition_do_not_change_valid_logits():
    model = tiny_lm()
    short, long = _tokens(1, 3, seed=2), _tokens(1, 9, seed=3)
    alone = model(short)
    padded = torch.cat([torch.cat([short, torch.full((1, 6), PAD_ID)], dim=1), long])
    batch = model(padded, torch.tensor([4, 10]))
    torch.testing.assert_close(batch[0, :4], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], model(long)[0], atol=1e-5, rtol=0)
    garbage = padded.clone()
    garbage[0, 4:] = 7  # other tokens in the padding: valid positions unchanged
    torch.testing.assert_close(model(garbage, torch.tensor([4, 10]))[0, :4], alone[0], atol=1e-5, rtol=0)


def test_lm_io_targets_end_with_eos_and_pad():
    tokens = torch.tensor([[5, 6, 7], [8, PAD_ID, PAD_ID]])
    inputs, targets = lm_io(tokens, torch.tensor([3, 1]))
    assert inputs.tolist() == [[SOS_ID, 5, 6, 7], [SOS_ID, 8, PAD_ID, PAD_ID]]
    assert targets.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]


def test_lm_log_probs_give_no_mass_to_blank_pad_sos():
    model = tiny_lm()
    log_probs = model.log_probs(_tokens(2, 4))
    assert torch.isinf(log_probs[..., [0, PAD_ID, SOS_ID]]).all()
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 5))
    tokens, lengths = torch.tensor([[5, 6, 7], [8, PAD_ID, PAD_ID]]), torch.tensor([3, 1])
    per_token = model.sentence_log_probs(tokens, lengths)
    assert per_token.shape == (2, 4) and (per_token[1, 2:] == 0).all() and (per_token[:, :2] < 0).all()
