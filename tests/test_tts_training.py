"""TTS losses, experiment config and the LightningModule's loss path (no Trainer needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support import TTS_MELS, tiny_tts_batch, tiny_tts_config

from seq2seq.core.config import ConfigError, from_dict
from seq2seq.core.text import CharTokenizer
from seq2seq.experiments import TTSExperimentConfig, TTSLossConfig, load_experiment
from seq2seq.models.tts import TTSModel, TTSOutput
from seq2seq.training.tts_module import (
    TTSTask,
    guided_attention_loss,
    guided_attention_weights,
    mel_losses,
    stop_loss,
    tts_losses,
)


def output(r: int = 2) -> TTSOutput:
    torch.manual_seed(0)
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    return TTSModel(tiny_tts_config(r))(tokens, token_lengths, mels, mel_lengths)


def test_mel_losses_count_real_frames_only():
    out = output(3)  # lengths 13, 8, 5 -> 15, 9, 6 frames produced
    reference = mel_losses(out)
    for b, n in enumerate(out.mel_lengths.tolist()):
        out.mel_before[b, n:] += 50.0
        out.target[b, n:] -= 50.0
    for name, value in mel_losses(out).items():
        torch.testing.assert_close(value, reference[name])


def test_stop_targets_and_mask():
    out = output(3)
    out.stop_logits = torch.full_like(out.stop_logits, -30.0)
    for b, n in enumerate(out.mel_lengths.tolist()):
        out.stop_logits[b, n - 1 :] = 30.0  # exactly right from the last real frame on
    assert stop_loss(out, 5.0) < 1e-6
    out.stop_logits[1, 9:] = -30.0  # beyond the frames produced for sentence 1: ignored
    assert stop_loss(out, 5.0) < 1e-6
    out.stop_logits[1, 8] = -30.0  # a padded-to-r frame after the end must say "stop"
    assert stop_loss(out, 5.0) > 0.1


def test_guided_attention_weights_are_zero_on_the_diagonal_and_outside_each_sentence():
    weights = guided_attention_weights(torch.tensor([4, 2]), torch.tensor([4, 3]), sigma=0.4)
    assert weights.shape == (2, 4, 4)
    assert torch.all(weights[0].diagonal() == 0) and weights[0, 0, 3] > 0.5
    assert weights[1, 2:].abs().sum() == 0 and weights[1, :, 3:].abs().sum() == 0


def test_guided_attention_prefers_diagonal_alignments():
    out = output(1)
    u, s = out.attention.shape[2:]
    diagonal, reverse = torch.zeros(u, s), torch.zeros(u, s)
    for b in range(1):
        steps, chars = int(out.mel_lengths_padded_to_r[b]), int(out.token_lengths[b])
        for t in range(steps):
            diagonal[t, min(chars - 1, t * chars // steps)] = 1.0
            reverse[t, chars - 1 - min(chars - 1, t * chars // steps)] = 1.0
    out.attention = diagonal.expand_as(out.attention).clone()
    low = guided_attention_loss(out, 0.4)
    out.attention = reverse.expand_as(out.attention).clone()
    assert guided_attention_loss(out, 0.4) > 3 * low


def test_total_loss_is_the_weighted_sum_and_has_gradients():
    out = output(2)
    losses = tts_losses(out, TTSLossConfig(l2_weight=0.0, guided_attention_weight=2.0))
    expected = losses["l1_before"] + losses["l1_after"] + losses["stop"] + 2.0 * losses["guided_attention"]
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()


def test_task_losses_on_a_batch():
    tokens, token_lengths, mels, mel_lengths = tiny_tts_batch()
    experiment = from_dict(
        TTSExperimentConfig, {"data": {"features": {"n_mels": TTS_MELS}}, "model": {"n_mels": TTS_MELS}}
    )
    experiment = dataclasses.replace(experiment, model=tiny_tts_config(2))
    task = TTSTask(experiment, CharTokenizer(list("abc")), "unused")
    batch_ = type(
        "B", (), dict(tokens=tokens, token_lengths=token_lengths, mels=mels, mel_lengths=mel_lengths)
    )
    assert torch.isfinite(task.losses(batch_)["loss"])
    assert "optimizer" in task.configure_optimizers()


def test_experiment_configs_load_and_validate():
    small = load_experiment("configs/tts/small.yaml")
    assert isinstance(small, TTSExperimentConfig) and small.model.reduction_factor == 3
    assert small.model.alignment_layers == (-2, -1)
    base = load_experiment("configs/tts/base.yaml")
    assert base.model.encoder.d_model == base.model.decoder.d_model
    with pytest.raises(ConfigError, match="reduction_factor=0 must be >= 1"):
        load_experiment("configs/tts/small.yaml", ["--model.reduction_factor=0"])
    with pytest.raises(ConfigError, match="model.n_mels=40 must equal data.features.n_mels=80"):
        load_experiment("configs/tts/small.yaml", ["--model.n_mels=40"])
    with pytest.raises(ConfigError, match="loss.stop_weight"):
        from_dict(TTSExperimentConfig, {"loss": {"stop_weight": -1.0}})
