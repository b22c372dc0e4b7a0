"""The TTS LightningModule: mel L1 + L2, stop-token BCE, guided attention, Noam warm-up.

The loss functions are plain functions of a :class:`~seq2seq.models.tts.TTSOutput`, so they can be
tested without a Trainer. Their weights come from :class:`~seq2seq.experiments.TTSLossConfig`, which
lives beside the experiment config (model packages read it without importing Lightning).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seq2seq.core.text import Tokenizer
from seq2seq.experiments import TTSExperimentConfig, TTSLossConfig
from seq2seq.models.tts import TTSModel, TTSOutput
from seq2seq.nn.masking import lengths_to_mask
from seq2seq.training.task import Seq2SeqTask


def mel_losses(out: TTSOutput) -> dict[str, torch.Tensor]:
    """L1 and L2 of both mel predictions against the target, averaged over real frames and bins.

    Frames past ``mel_lengths`` (batch padding and the rounding up to a multiple of r) count for nothing.
    """
    mask = lengths_to_mask(out.mel_lengths, out.target.shape[1]).unsqueeze(-1).float()
    count = mask.sum() * out.target.shape[-1]
    losses = {}
    for name, prediction in (("before", out.mel_before), ("after", out.mel_after)):
        error = (prediction.float() - out.target) * mask
        losses[f"l1_{name}"] = error.abs().sum() / count
        losses[f"l2_{name}"] = error.square().sum() / count
    return losses


def stop_loss(out: TTSOutput, pos_weight: float) -> torch.Tensor:
    """BCE of "this frame is the last one or later", over the frames the decoder produced.

    Frames between the real end and the end of the last r-frame group are positives: at inference a
    sentence stops at the first frame whose probability crosses the threshold.
    """
    frames = torch.arange(out.stop_logits.shape[1], device=out.stop_logits.device)
    target = (frames[None] >= out.mel_lengths[:, None] - 1).float()
    mask = lengths_to_mask(out.mel_lengths_padded_to_r, out.stop_logits.shape[1]).float()
    weight = torch.full((), pos_weight, device=target.device)
    loss = F.binary_cross_entropy_with_logits(
        out.stop_logits.float(), target, reduction="none", pos_weight=weight
    )
    return (loss * mask).sum() / mask.sum()


def guided_attention_weights(steps: torch.Tensor, token_lengths: torch.Tensor, sigma: float) -> torch.Tensor:
    """Penalty ``1 - exp(-(s/S - u/U)^2 / (2 sigma^2))`` off the diagonal (Tachibana et al. 2017).

    Args:
        steps: (B,) decoder steps U of each sentence.
        token_lengths: (B,) text lengths S.
        sigma: band width in fractions of the lengths.

    Returns:
        (B, U_max, S_max), zero outside each sentence's U x S rectangle.
    """
    u = torch.arange(int(steps.max()), device=steps.device)[None, :, None] / steps[:, None, None]
    s = (
        torch.arange(int(token_lengths.max()), device=steps.device)[None, None, :]
        / token_lengths[:, None, None]
    )
    penalty = 1.0 - torch.exp(-((s - u) ** 2) / (2 * sigma**2))
    mask = lengths_to_mask(steps)[:, :, None] & lengths_to_mask(token_lengths)[:, None, :]
    return penalty * mask


def guided_attention_loss(out: TTSOutput, sigma: float) -> torch.Tensor:
    """Mean attention mass off the diagonal band, over the chosen heads and each sentence's U x S cells."""
    r = out.target.shape[1] // out.attention.shape[2]  # frames per decoder step
    steps = out.mel_lengths_padded_to_r // r
    weights = guided_attention_weights(steps, out.token_lengths, sigma)
    attention = out.attention.float()[:, :, : weights.shape[1], : weights.shape[2]]
    cells = (steps * out.token_lengths).sum() * attention.shape[1]
    return (attention * weights[:, None]).sum() / cells


def tts_losses(out: TTSOutput, config: TTSLossConfig) -> dict[str, torch.Tensor]:
    """Every loss term and their weighted sum under ``loss``."""
    losses = mel_losses(out)
    losses["stop"] = stop_loss(out, config.stop_pos_weight)
    losses["guided_attention"] = guided_attention_loss(out, config.guided_attention_sigma)
    losses["loss"] = (
        config.l1_weight * (losses["l1_before"] + losses["l1_after"])
        + config.l2_weight * (losses["l2_before"] + losses["l2_after"])
        + config.stop_weight * losses["stop"]
        + config.guided_attention_weight * losses["guided_attention"]
    )
    return losses


class TTSTask(Seq2SeqTask):
    """Trains a :class:`TTSModel` with teacher forcing."""

    def __init__(self, config: TTSExperimentConfig, tokenizer: Tokenizer, tokenizer_dir: str):
        super().__init__(config, tokenizer, tokenizer_dir)
        self.model = TTSModel(config.model)

    def forward_batch(self, batch) -> TTSOutput:
        """The model's teacher-forced pass over a batch."""
        return self.model(batch.tokens, batch.token_lengths, batch.mels, batch.mel_lengths)

    def losses(self, batch) -> dict[str, torch.Tensor]:
        return tts_losses(self.forward_batch(batch), self.config.loss)
