"""The ASR LightningModule: hybrid CTC/attention loss, warm-up schedule, WER/CER on validation."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchmetrics.text import CharErrorRate, WordErrorRate

from seq2seq.core.audio import SpecAugment
from seq2seq.core.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID, Tokenizer
from seq2seq.decoding.greedy import ctc_greedy
from seq2seq.experiments import ASRExperimentConfig
from seq2seq.models.asr import ASRModel
from seq2seq.training.task import Seq2SeqTask, token_loss

log = logging.getLogger(__name__)


def decoder_io(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs ``SOS y`` and targets ``y EOS`` (padded with PAD), both (B, U + 1)."""
    batch = tokens.shape[0]
    inputs = torch.cat([tokens.new_full((batch, 1), SOS_ID), tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_full((batch, 1), PAD_ID)], dim=1)
    targets[torch.arange(batch, device=tokens.device), lengths] = EOS_ID
    return inputs, targets


class ASRTask(Seq2SeqTask):
    """Trains an :class:`ASRModel` with ``ctc_weight * CTC + (1 - ctc_weight) * attention``."""

    def __init__(self, config: ASRExperimentConfig, tokenizer: Tokenizer, tokenizer_dir: str):
        super().__init__(config, tokenizer, tokenizer_dir)
        self.model = ASRModel(config.model)
        self.spec_augment = SpecAugment(config.spec_augment)
        self.wer, self.cer = WordErrorRate(), CharErrorRate()

    def forward_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's teacher-forced pass over a batch (SpecAugment in training mode only)."""
        features = self.spec_augment(batch.features, batch.feature_lengths)
        inputs, _ = decoder_io(batch.tokens, batch.token_lengths)
        return self.model(features, batch.feature_lengths, inputs, batch.token_lengths + 1)

    def forward_losses(self, batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Loss terms, CTC log-probabilities (B, S, V) and their lengths (SpecAugment in training only)."""
        ctc_log_probs, memory_lengths, logits = self.forward_batch(batch)
        _, targets = decoder_io(batch.tokens, batch.token_lengths)
        ctc = F.ctc_loss(
            ctc_log_probs.transpose(0, 1),
            batch.tokens,
            memory_lengths,
            batch.token_lengths,
            blank=BLANK_ID,
            reduction="mean",
            zero_infinity=True,
        )
        attention, accuracy = token_loss(logits, targets, self.config.label_smoothing)
        weight = self.config.ctc_weight
        losses = {
            "loss": weight * ctc + (1 - weight) * attention,
            "ctc_loss": ctc,
            "attention_loss": attention,
            "attention_accuracy": accuracy,
        }
        return losses, ctc_log_probs, memory_lengths

    def losses(self, batch) -> dict[str, torch.Tensor]:
        return self.forward_losses(batch)[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        """Losses, teacher-forced attention accuracy, and WER/CER of CTC greedy decoding.

        CTC greedy needs no autoregressive loop, so validating stays cheap however poorly the decoder
        does early in training; ``seq2seq evaluate`` measures the real (beam search) result.
        """
        if batch is None:
            return  # every utterance of this batch was unreadable (each one was reported)
        losses, ctc_log_probs, memory_lengths = self.forward_losses(batch)
        self.log_validation_losses(losses, self.batch_size(batch))
        predictions = [self.tokenizer.decode(h) for h in ctc_greedy(ctc_log_probs, memory_lengths)]
        references = [
            self.tokenizer.decode(t[:n].tolist()) for t, n in zip(batch.tokens, batch.token_lengths)
        ]
        self.wer.update(predictions, references)
        self.cer.update(predictions, references)

    def on_validation_epoch_end(self) -> None:
        self.log("val_wer", self.wer.compute(), prog_bar=True, sync_dist=True)
        self.log("val_cer", self.cer.compute(), prog_bar=True, sync_dist=True)
        self.wer.reset()
        self.cer.reset()
