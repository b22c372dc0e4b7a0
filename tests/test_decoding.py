"""Decoding specifications: greedy = beam 1, beam search is exact with a wide beam, cache = full pass,
batch invariance, CTC prefix scores match torch's CTC loss, n-best ordering.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from support import tiny_asr_config

from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID, UNK_ID
from seq2seq.decoding import (
    AttentionScorer,
    CTCPrefixScorer,
    DecodingConfig,
    Hypothesis,
    beam_search,
    ctc_greedy,
    decode_batch,
    greedy_search,
)
from seq2seq.decoding.beam_search import end_detect
from seq2seq.models.asr import ASRModel


def tiny_model(vocab_size: int = 12, seed: int = 0, sharpness: float = 4.0) -> ASRModel:
    """A random 2-layer model; scaled output layers make its distributions peaky enough to be varied."""
    torch.manual_seed(seed)
    config = tiny_asr_config(
        vocab_size, input_dim=16, conv_channels=8, num_layers=2, d_model=32, num_heads=4, ffn_dim=64
    )
    model = ASRModel(config).eval()
    with torch.no_grad():
        model.output.weight.mul_(sharpness)
        model.ctc_head.weight.mul_(sharpness)
    return model


def random_batch(lengths: list[int], seed: int = 1, dim: int = 16):
    torch.manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), dim), torch.tensor(lengths)


def test_beam_one_equals_greedy():
    model = tiny_model()
    features, lengths = random_batch([120, 90, 60, 100, 75])
    greedy = greedy_search(model, features, lengths, max_length_ratio=0.5)
    config = DecodingConfig(beam_size=1, ctc_weight=0.0, max_length_ratio=0.5)
    beam = beam_search(model, features, lengths, config)
    assert [hyps[0].tokens for hyps in beam] == greedy
    assert decode_batch(model, features, lengths, config) == greedy
    assert len({len(tokens) for tokens in greedy}) > 1  # not degenerate: utterances end at different steps


def _attention_log_prob(model, memory, memory_lengths, tokens: list[int]) -> float:
    inputs = torch.tensor([[SOS_ID, *tokens]])
    log_probs = model.decode(inputs, memory, memory_lengths).float().log_softmax(-1)[0]
    return float(log_probs.gather(1, torch.tensor([*tokens, EOS_ID])[:, None]).sum())


def _ctc_log_prob(log_probs, length, tokens: list[int]) -> float:
    target = torch.tensor([tokens], dtype=torch.long)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).double(),
        target,
        length,
        torch.tensor([len(tokens)]),
        blank=BLANK_ID,
        reduction="none",
    )
    return -float(loss)


def _brute_force(model, features, lengths, ctc_weight: float, max_tokens: int):
    """Every sequence of emittable tokens up to ``max_tokens``, scored as beam search scores them."""
    memory, memory_lengths = model.encode(features, lengths)
    ctc = model.ctc_log_probs(memory)
    symbols = [UNK_ID, *range(5, model.config.vocab_size)]
    scored = []
    for n in range(max_tokens + 1):
        for seq in itertools.product(symbols, repeat=n):
            att = _attention_log_prob(model, memory, memory_lengths, list(seq)) if ctc_weight < 1 else 0.0
            ctc_score = _ctc_log_prob(ctc, memory_lengths, list(seq)) if ctc_weight > 0 else 0.0
            scored.append(((1 - ctc_weight) * att + ctc_weight * ctc_score, list(seq)))
    return sorted(scored, key=lambda item: -item[0])


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3, 1.0])
@torch.inference_mode()
def test_wide_beam_finds_brute_force_optimum(ctc_weight):
    model = tiny_model(vocab_size=8, seed=3, sharpness=2.0)  # UNK + 3 content ids + EOS
    with torch.no_grad():
        model.output.bias[EOS_ID] -= 3.0  # so that the optimum is not the empty transcript
    features, lengths = random_batch([48], seed=4)
    frames = int(model.encode(features, lengths)[1])
    config = DecodingConfig(beam_size=100, ctc_weight=ctc_weight, max_length_ratio=3.5 / frames, nbest=5)
    expected = _brute_force(model, features, lengths, ctc_weight, max_tokens=3)
    found = beam_search(model, features, lengths, config)[0]
    assert [h.tokens for h in found] == [seq for _, seq in expected[:5]]
    assert [h.score for h in found] == pytest.approx([score for score, _ in expected[:5]], abs=1e-4)


@torch.inference_mode()
def test_cached_decoding_equals_full_recomputation():
    model = tiny_model()
    memory, memory_lengths = model.encode(*random_batch([80, 64, 40]))
    torch.manual_seed(5)
    tokens = torch.cat([torch.full((3, 1), SOS_ID), torch.randint(5, 12, (3, 7))], dim=1)
    full = model.decode(tokens, memory, memory_lengths)
    cache = model.new_cache()
    steps = [
        model.decode(tokens[:, i : i + 1], memory, memory_lengths, cache) for i in range(tokens.shape[1])
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_attention_scorer_reordering_matches_full_pass():
    """Beam reordering moves only the self-attention cache; scores must still equal a fresh full pass."""
    model = tiny_model()
    memory, memory_lengths = model.encode(*random_batch([80, 64]))
    scorer = AttentionScorer(model)
    state = scorer.init_state(memory, memory_lengths)
    tokens = torch.full((2, 1), SOS_ID)
    expand = torch.tensor([0, 0, 0, 1, 1, 1])  # 3 beams per utterance, as in beam search
    scorer.score(tokens, state, None)
    state, tokens = scorer.select_state(state, expand, tokens[expand, 0]), tokens[expand]
    torch.manual_seed(6)
    for _ in range(4):
        new = torch.randint(5, 12, (6,))
        reorder = torch.tensor([2, 0, 0, 4, 5, 3])  # stays inside each utterance's rows
        tokens = torch.cat([tokens[reorder], new[:, None]], dim=1)
        state = scorer.select_state(state, reorder, new)
        scores, state = scorer.score(tokens, state, None)
    full = model.decode(tokens, memory[expand], memory_lengths[expand])[:, -1].log_softmax(-1)
    torch.testing.assert_close(scores, full, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_transcript_does_not_depend_on_batch():
    model = tiny_model()
    features, lengths = random_batch([60, 120, 100], seed=7)
    config = DecodingConfig(beam_size=4, ctc_weight=0.3, max_length_ratio=0.5, nbest=2)
    alone = beam_search(model, features[:1, :60], lengths[:1], config)[0]
    batched = beam_search(model, features, lengths, config)[0]
    assert [h.tokens for h in batched] == [h.tokens for h in alone]
    assert [h.score for h in batched] == pytest.approx([h.score for h in alone], abs=1e-4)
    greedy = greedy_search(model, features, lengths, 0.5)[0]
    assert greedy == greedy_search(model, features[:1, :60], lengths[:1], 0.5)[0]


def _ctc_posteriors(batch: int, frames: int, vocab: int, seed: int) -> torch.Tensor:
    """Random CTC log-probs in which PAD, SOS and EOS never fire (as after training)."""
    torch.manual_seed(seed)
    logits = torch.randn(batch, frames, vocab) * 2
    logits[:, :, [PAD_ID, SOS_ID, EOS_ID]] = -1e9
    return logits.log_softmax(-1)


def _prefix_scores(scorer, state, tokens: list[int]):
    """Walk one hypothesis token by token; return the increments and the final state."""
    increments = []
    for i, token in enumerate(tokens):
        history = torch.tensor([[SOS_ID, *tokens[:i]]])
        scores, state = scorer.score(history, state, torch.tensor([[token]]))
        increments.append(float(scores[0, 0]))
        state = scorer.select_state(state, torch.tensor([0]), torch.tensor([token]))
    return increments, state


@torch.inference_mode()
@pytest.mark.parametrize("tokens", [[], [5], [5, 5], [6, 5, 6], [7, 7, 4, 7, 6], [5, 6, 7, 8, 5, 6, 7]])
def test_ctc_prefix_score_matches_ctc_loss(tokens):
    log_probs = _ctc_posteriors(2, 12, 9, seed=len(tokens))
    lengths = torch.tensor([12, 9])
    scorer = CTCPrefixScorer(lambda memory: memory)
    state = scorer.init_state(log_probs, lengths)
    state = scorer.select_state(state, torch.tensor([1]))  # the shorter, padded utterance
    increments, state = _prefix_scores(scorer, state, tokens)
    eos, _ = scorer.score(torch.tensor([[SOS_ID, *tokens]]), state, torch.tensor([[EOS_ID]]))
    total = sum(increments) + float(eos[0, 0])
    assert total == pytest.approx(_ctc_log_prob(log_probs[1:], lengths[1:], tokens), abs=1e-6)


@torch.inference_mode()
@pytest.mark.parametrize("prefix", [[], [5], [6, 6], [5, 7, 8]])
def test_ctc_prefix_probabilities_are_consistent(prefix):
    """P(prefix) = P(exactly prefix) + sum over symbols c of P(prefix + c)."""
    log_probs = _ctc_posteriors(1, 10, 9, seed=11)
    scorer = CTCPrefixScorer(lambda memory: memory)
    _, state = _prefix_scores(scorer, scorer.init_state(log_probs, torch.tensor([10])), prefix)
    increments, _ = scorer.score(torch.tensor([[SOS_ID, *prefix]]), state, None)  # EOS = exactly prefix
    assert float(increments.logsumexp(-1)) == pytest.approx(0.0, abs=1e-6)
    assert increments[0, BLANK_ID] == float("-inf")


def _peaky_stub(batch: int, frames: int, vocab: int, seed: int):
    """A 'model' whose memory is a peaky CTC posterior; ctc_weight=1 never calls the decoder."""
    torch.manual_seed(seed)
    best = torch.randint(4, vocab, (batch, frames))
    best[torch.rand(batch, frames) < 0.4] = BLANK_ID
    best[best == 4] = BLANK_ID  # keep UNK out: ids 5.. and blank
    logits = torch.full((batch, frames, vocab), -3.0).scatter(2, best[..., None], 3.0)
    logits[:, :, [PAD_ID, SOS_ID, EOS_ID]] = -1e9
    posterior = logits.log_softmax(-1)
    return SimpleNamespace(
        encode=lambda features, lengths: (features, lengths),
        ctc_log_probs=lambda memory: memory,
        config=SimpleNamespace(vocab_size=vocab),
    ), posterior


def test_ctc_only_beam_search_recovers_ctc_greedy():
    model, posterior = _peaky_stub(batch=3, frames=30, vocab=10, seed=12)
    lengths = torch.tensor([30, 22, 15])
    config = DecodingConfig(beam_size=4, ctc_weight=1.0, max_length_ratio=1.0)
    found = beam_search(model, posterior, lengths, config)
    expected = ctc_greedy(posterior, lengths)
    assert [hyps[0].tokens for hyps in found] == expected
    assert all(len(tokens) > 3 for tokens in expected)


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    ids = torch.tensor([[0, 5, 5, 0, 5, 6, 6, 0, 7, 7]])
    log_probs = F.one_hot(ids, 9).float().log()
    assert ctc_greedy(log_probs, torch.tensor([10])) == [[5, 5, 6, 7]]
    assert ctc_greedy(log_probs, torch.tensor([7])) == [[5, 5, 6]]


@pytest.mark.parametrize("early_stop", ["bound", "espnet", "none"])
def test_nbest_distinct_and_sorted(early_stop):
    model = tiny_model()
    features, lengths = random_batch([120, 80], seed=13)
    config = DecodingConfig(beam_size=6, ctc_weight=0.3, max_length_ratio=0.5, nbest=4, early_stop=early_stop)
    for hyps in beam_search(model, features, lengths, config):
        assert len(hyps) == 4
        assert len({tuple(h.tokens) for h in hyps}) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.score == pytest.approx(0.7 * h.attention_score + 0.3 * h.ctc_score, abs=1e-4)


def test_length_rewards_lengthen_outputs():
    model = tiny_model(seed=1)  # a model whose plain search ends well before the maximum length
    features, lengths = random_batch([120], seed=14)
    plain = DecodingConfig(beam_size=4, ctc_weight=0.0, max_length_ratio=0.5)
    rewarded = DecodingConfig(
        beam_size=4, ctc_weight=0.0, max_length_ratio=0.5, length_penalty=2.0, early_stop="espnet"
    )
    short = beam_search(model, features, lengths, plain)[0][0]
    long = beam_search(model, features, lengths, rewarded)[0][0]
    assert len(long.tokens) > len(short.tokens)
    normalized = DecodingConfig(
        beam_size=4, max_length_ratio=0.5, length_normalization=True, early_stop="none"
    )
    best = beam_search(model, features, lengths, normalized)[0][0]
    raw = 0.7 * best.attention_score + 0.3 * best.ctc_score
    assert best.score == pytest.approx(raw / (len(best.tokens) + 1), abs=1e-5)


def test_end_detect_needs_three_hopeless_lengths():
    hyps = [Hypothesis([5], -1.0)] + [Hypothesis([5] * n, -20.0) for n in (3, 4, 5)]
    assert end_detect(hyps, 5)
    assert not end_detect(hyps, 6)  # no hypothesis ended at length 6
    assert not end_detect(hyps[:3], 5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beam_size", 0),
        ("ctc_weight", 1.5),
        ("max_length_ratio", 0.0),
        ("min_length_ratio", 2.0),
        ("nbest", 20),
        ("pre_beam_ratio", 0.5),
        ("early_stop", "never"),
        ("length_penalty", float("nan")),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DecodingConfig(**{field: value})


def test_bound_early_stop_refuses_length_rewards():
    with pytest.raises(ValueError, match="early_stop"):
        DecodingConfig(length_penalty=1.0)
    assert DecodingConfig(beam_size=10, pre_beam_ratio=1.5).pre_beam_size == 15


def test_decoding_does_not_import_lightning():
    code = "import sys, seq2seq.decoding; assert not any(m.startswith('lightning') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
