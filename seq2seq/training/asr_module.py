"""The ASR LightningModule: hybrid CTC/attention loss, warm-up schedule, WER/CER on validation."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchmetrics.text import CharErrorRate, WordErrorRate

from seq2seq.audio import SpecAugment
from seq2seq.decoding.greedy import greedy_search
from seq2seq.experiments import ASRExperimentConfig
from seq2seq.models.asr import ASRModel
from seq2seq.text import BLANK_ID, EOS_ID, PAD_ID, SOS_ID, Tokenizer
from seq2seq.training.task import Seq2SeqTask

log = logging.getLogger(__name__)


def decoder_io(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs ``SOS y`` and targets ``y EOS`` (padded with PAD), both (B, U + 1)."""
    batch = tokens.shape[0]
    column = tokens.new_full((batch, 1), PAD_ID)
    inputs = torch.cat([column.fill_(SOS_ID), tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_full((batch, 1), PAD_ID)], dim=1)
    targets[torch.arange(batch, device=tokens.device), lengths] = EOS_ID
    return inputs, targets


class ASRTask(Seq2SeqTask):
    """Trains an :class:`ASRModel` with ``ctc_weight * CTC + (1 - ctc_weight) * attention``."""

    task_name = "asr"

    def __init__(self, config: ASRExperimentConfig, tokenizer: Tokenizer, tokenizer_dir: str):
        super().__init__(config, tokenizer, tokenizer_dir)
        self.model = ASRModel(config.model)
        self.spec_augment = SpecAugment(config.spec_augment)
        self.wer, self.cer = WordErrorRate(), CharErrorRate()

    def losses(self, batch) -> dict[str, torch.Tensor]:
        features = self.spec_augment(batch.features, batch.feature_lengths)
        inputs, targets = decoder_io(batch.tokens, batch.token_lengths)
        ctc_log_probs, memory_lengths, logits = self.model(features, batch.feature_lengths, inputs,
                                                           batch.token_lengths + 1)
        ctc = F.ctc_loss(ctc_log_probs.transpose(0, 1), batch.tokens, memory_lengths, batch.token_lengths,
                         blank=BLANK_ID, reduction="mean", zero_infinity=True)
        attention = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD_ID,
                                    label_smoothing=self.config.label_smoothing)
        weight = self.config.ctc_weight
        return {"loss": weight * ctc + (1 - weight) * attention, "ctc_loss": ctc, "attention_loss": attention}

    def validation_step(self, batch, batch_idx: int) -> None:
        if batch is None:
            return  # every utterance of this batch was unreadable (each one was reported)
        self.log_validation_losses(batch)
        hypotheses = greedy_search(self.model, batch.features, batch.feature_lengths,
                                   self.config.decoding.max_length_ratio)
        predictions = [self.tokenizer.decode(h) for h in hypotheses]
        references = [self.tokenizer.decode(t[:n].tolist()) for t, n in zip(batch.tokens, batch.token_lengths)]
        self.wer.update(predictions, references)
        self.cer.update(predictions, references)

    def on_validation_epoch_end(self) -> None:
        self.log("val_wer", self.wer.compute(), prog_bar=True, sync_dist=True)
        self.log("val_cer", self.cer.compute(), prog_bar=True, sync_dist=True)
        self.wer.reset()
        self.cer.reset()
