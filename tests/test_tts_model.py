"""Specification of the Transformer TTS model: shapes, reduction factor, caching, batching, masking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import TTS_MELS, tiny_stack, tiny_tts_batch, tiny_tts_config

from seq2seq.core.config import from_dict, to_dict
from seq2seq.decoding.tts import synthesize
from seq2seq.models.tts import TTSModel, TTSModelConfig
from seq2seq.nn.norms import NormConfig
from seq2seq.nn.tts_blocks import DecoderPrenet, EncoderPrenet, Postnet


def scramble_padding(tokens, token_lengths, mels, mel_lengths):
    """Same batch with different garbage beyond every length."""
    tokens, mels = tokens.clone(), mels.clone()
    for b in range(tokens.shape[0]):
        tokens[b, token_lengths[b] :] = 7
        mels[b, mel_lengths[b] :] = 100.0
    return tokens, mels


@pytest.mark.parametrize("r", [1, 2, 3])
def test_forward_shapes_and_lengths_padded_to_r(r):
    torch.manual_seed(0)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    out = TTSModel(tiny_tts_config(r))(tokens, token_lengths, mels, mel_lengths)
    t_r = -(-13 // r) * r
    assert out.mel_before.shape == out.mel_after.shape == out.target.shape == (3, t_r, TTS_MELS)
    assert out.stop_logits.shape == (3, t_r)
    assert out.mel_lengths_padded_to_r.tolist() == [-(-n // r) * r for n in (13, 8, 5)]
    assert out.attention.shape == (3, 2, t_r // r, 7)  # one layer x two heads
    assert torch.allclose(out.attention.sum(-1), torch.ones(()))
    for b, n in enumerate(mel_lengths.tolist()):
        assert out.target[b, n:].abs().sum() == 0 and out.mel_after[b, n:].abs().sum() == 0


@pytest.mark.parametrize("r", [1, 2, 3])
def test_infer_shapes(r):
    torch.manual_seed(0)
    tokens, token_lengths, _, _ = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(r)).eval()
    mels, lengths, alignments = synthesize(
        model, tokens, token_lengths, max_length_ratio=2.5, stop_threshold=1.1
    )
    assert lengths.tolist() == [18, 10, 5]  # ceil(2.5 * token length): never stopped early
    assert mels.shape == (3, 18, TTS_MELS)
    assert alignments.shape == (3, -(-18 // r), 7)
    assert mels[1, 10:].abs().sum() == 0 and alignments[2, -(-5 // r) :].abs().sum() == 0


@pytest.mark.parametrize("r", [1, 2, 3])
def test_stop_token_ends_inside_a_frame_group(r):
    """A sentence may end on any frame of a group, so lengths need not be multiples of r."""
    torch.manual_seed(0)
    tokens, token_lengths, _, _ = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(r)).eval()
    with torch.no_grad():
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-20.0)
        model.stop_head.bias[min(1, r - 1)] = 20.0  # the second frame of each group says "stop"
    _, lengths, _ = synthesize(model, tokens, token_lengths)
    assert lengths.tolist() == [min(2, r)] * 3
    _, lengths, _ = synthesize(model, tokens, token_lengths, min_length_ratio=1.5)
    first_allowed = [-(-(int(1.5 * n) - min(2, r)) // r) * r + min(2, r) for n in (7, 4, 2)]
    assert lengths.tolist() == first_allowed


@pytest.mark.parametrize("r", [1, 3])
def test_teacher_forcing_reads_only_the_last_frame_of_earlier_groups(r):
    torch.manual_seed(0)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(r)).eval()
    reference = model(tokens, token_lengths, mels, mel_lengths).mel_before
    for frame in range(9):
        changed = mels.clone()
        changed[:, frame] += 5.0
        moved = (model(tokens, token_lengths, changed, mel_lengths).mel_before - reference).abs().sum(
            (0, 2)
        ) > 0
        first_affected = (frame // r + 1) * r  # the step after the frame's group
        if (frame + 1) % r:  # not the last frame of its group: never a decoder input
            assert not moved.any()
        else:
            assert not moved[:first_affected].any() and moved[first_affected : first_affected + r].all()


@pytest.mark.parametrize("r", [1, 2])
def test_cached_inference_equals_recomputation(r):
    """With the same dropout masks (same generator seed) the KV cache changes nothing."""
    torch.manual_seed(0)
    tokens, token_lengths, _, _ = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(r)).eval()
    kwargs = dict(max_length_ratio=2.0, stop_threshold=1.1)
    cached = synthesize(model, tokens, token_lengths, generator=torch.Generator().manual_seed(3), **kwargs)
    full = synthesize(
        model, tokens, token_lengths, use_cache=False, generator=torch.Generator().manual_seed(3), **kwargs
    )
    assert torch.equal(cached.mel_lengths, full.mel_lengths)
    torch.testing.assert_close(cached.mels, full.mels, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached.alignments, full.alignments, atol=1e-5, rtol=0)


def test_batch_synthesis_equals_one_sentence_at_a_time():
    torch.manual_seed(0)
    tokens, token_lengths, _, _ = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(2, prenet_dropout_at_inference=False)).eval()
    together = synthesize(model, tokens, token_lengths, max_length_ratio=2.0, stop_threshold=1.1)
    for b, n in enumerate(token_lengths.tolist()):
        alone = synthesize(
            model, tokens[b : b + 1, :n], token_lengths[b : b + 1], max_length_ratio=2.0, stop_threshold=1.1
        )
        frames = int(alone.mel_lengths)
        assert int(together.mel_lengths[b]) == frames
        torch.testing.assert_close(together.mels[b, :frames], alone.mels[0, :frames], atol=1e-4, rtol=0)
        steps = alone.alignments.shape[1]
        torch.testing.assert_close(together.alignments[b, :steps, :n], alone.alignments[0], atol=1e-5, rtol=0)


def test_prenet_dropout_at_inference_is_random_unless_disabled_or_seeded():
    torch.manual_seed(0)
    tokens, token_lengths, _, _ = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(1, decoder_prenet_dropout=0.5)).eval()
    kwargs = dict(max_length_ratio=1.0, stop_threshold=1.1)
    a, b = (
        synthesize(model, tokens, token_lengths, **kwargs),
        synthesize(model, tokens, token_lengths, **kwargs),
    )
    assert not torch.allclose(a.mels, b.mels)
    seeded = [
        synthesize(model, tokens, token_lengths, generator=torch.Generator().manual_seed(1), **kwargs)
        for _ in range(2)
    ]
    assert torch.equal(seeded[0].mels, seeded[1].mels)
    model.decoder_prenet.dropout_at_inference = False
    a, b = (
        synthesize(model, tokens, token_lengths, **kwargs),
        synthesize(model, tokens, token_lengths, **kwargs),
    )
    assert torch.equal(a.mels, b.mels)


@pytest.mark.parametrize("kind", ["batch", "instance", "batch_renorm", "layer"])
def test_padding_does_not_leak_through_prenet_and_postnet_norms(kind):
    """In train mode (batch statistics), changing padded inputs changes no valid output."""
    torch.manual_seed(0)
    norm = NormConfig(kind=kind)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    other_tokens, other_mels = scramble_padding(tokens, token_lengths, mels, mel_lengths)
    prenet, postnet = (
        EncoderPrenet(12, 8, 8, 16, norm=norm, dropout=0.0),
        Postnet(TTS_MELS, 8, norm=norm, dropout=0.0),
    )
    for module, inputs, lengths in (
        (prenet, (tokens, other_tokens), token_lengths),
        (postnet, (mels, other_mels), mel_lengths),
    ):
        first, second = (module(x, lengths) for x in inputs)
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(first[b, :n], second[b, :n])
            assert second[b, n:].abs().sum() == 0


def test_padding_does_not_leak_into_the_whole_model_in_train_mode():
    torch.manual_seed(0)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    other_tokens, other_mels = scramble_padding(tokens, token_lengths, mels, mel_lengths)
    model = TTSModel(
        tiny_tts_config(
            2,
            decoder=tiny_stack(num_layers=2, norm=NormConfig(kind="batch")),
        )
    )
    first = model(tokens, token_lengths, mels, mel_lengths)
    second = model(other_tokens, token_lengths, other_mels, mel_lengths)
    for b, n in enumerate(mel_lengths.tolist()):
        torch.testing.assert_close(first.mel_after[b, :n], second.mel_after[b, :n])
        torch.testing.assert_close(first.stop_logits[b, :n], second.stop_logits[b, :n])


def test_decoder_prenet_shapes_and_eval_dropout_flag():
    prenet = DecoderPrenet(TTS_MELS, 8, 16, dropout=0.5, dropout_at_inference=False).eval()
    x = torch.randn(2, 5, TTS_MELS)
    assert prenet(x).shape == (2, 5, 16)
    assert torch.equal(prenet(x), prenet(x))


def test_positional_encoding_scale_changes_the_output_and_learns():
    torch.manual_seed(0)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    model = TTSModel(tiny_tts_config(1)).eval()
    reference = model(tokens, token_lengths, mels, mel_lengths).mel_after
    for position in (model.encoder_position, model.decoder_position):
        with torch.no_grad():
            position.alpha.fill_(0.0)
        assert not torch.allclose(model(tokens, token_lengths, mels, mel_lengths).mel_after, reference)
        with torch.no_grad():
            position.alpha.fill_(1.0)
    model(tokens, token_lengths, mels, mel_lengths).mel_after.sum().backward()
    assert model.encoder_position.alpha.grad.abs() > 0 and model.decoder_position.alpha.grad.abs() > 0


def test_config_validation_and_dict_fields():
    with pytest.raises(ValueError, match="reduction_factor=0 must be >= 1"):
        TTSModelConfig(reduction_factor=0)
    with pytest.raises(ValueError, match="alignment_heads"):
        TTSModelConfig(alignment_heads=(4,))
    with pytest.raises(ValueError, match="postnet_kernel=4"):
        TTSModelConfig(postnet_kernel=4)
    with pytest.raises(ValueError, match="encoder.d_model=16 must equal"):
        tiny_tts_config(decoder=tiny_stack(num_layers=2, d_model=32))
    config = from_dict(
        TTSModelConfig,
        {
            "prenet_norm": {"kind": "layer"},
            "encoder": {"num_layers": 1, "d_model": 32, "num_heads": 2},
            "decoder": {"num_layers": 1, "d_model": 32, "num_heads": 2},
            "alignment_layers": [0],
        },
    )
    assert config.prenet_norm == NormConfig(kind="layer") and config.alignment_layers == (0,)
    assert from_dict(TTSModelConfig, to_dict(config)) == config  # round-trips through JSON-like dicts


@pytest.mark.slow
def test_tiny_model_overfits_a_few_sentences():
    torch.manual_seed(0)
    frames = torch.arange(20, dtype=torch.float32)
    mels = torch.stack(
        [torch.sin(frames[:, None] * (0.2 + 0.1 * k) + torch.arange(TTS_MELS)) for k in range(3)]
    )
    tokens, token_lengths = (
        torch.tensor([[5, 6, 7, 8], [9, 10, 11, 1], [6, 8, 1, 1]]),
        torch.tensor([4, 3, 2]),
    )
    mel_lengths = torch.tensor([20, 16, 12])
    model = TTSModel(tiny_tts_config(2, decoder_prenet_dropout=0.1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    mask = (torch.arange(20)[None] < mel_lengths[:, None]).unsqueeze(-1)
    losses = []  # 200 steps take 3-6 s on one core
    for _ in range(200):
        out = model(tokens, token_lengths, mels, mel_lengths)
        l1 = ((out.mel_before - out.target).abs() + (out.mel_after - out.target).abs()) * mask
        loss = l1.sum() / (mask.sum() * TTS_MELS)
        stop_target = (torch.arange(20)[None] >= mel_lengths[:, None] - 1).float()
        loss = loss + F.binary_cross_entropy_with_logits(out.stop_logits, stop_target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
