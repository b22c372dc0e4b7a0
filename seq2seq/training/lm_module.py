"""The language-model LightningModule: next-token cross-entropy (optionally label-smoothed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seq2seq.core.text import PAD_ID, Tokenizer
from seq2seq.experiments import LMExperimentConfig
from seq2seq.models.lm import LanguageModel, lm_io
from seq2seq.training.task import Seq2SeqTask


class LMTask(Seq2SeqTask):
    """Trains a :class:`LanguageModel` on ``SOS y -> y EOS``; logs the loss, the unsmoothed
    cross-entropy per token (``nll``, nats) and next-token accuracy. ``val_loss`` picks checkpoints."""

    def __init__(self, config: LMExperimentConfig, tokenizer: Tokenizer, tokenizer_dir: str):
        super().__init__(config, tokenizer, tokenizer_dir)
        self.model = LanguageModel(config.model)

    def forward_batch(self, batch) -> torch.Tensor:
        """Teacher-forced logits (B, U + 1, V) of a ``TextBatch``."""
        inputs, _ = lm_io(batch.tokens, batch.token_lengths)
        return self.model(inputs, batch.token_lengths + 1)

    def losses(self, batch) -> dict[str, torch.Tensor]:
        logits = self.forward_batch(batch).float().flatten(0, 1)
        targets = lm_io(batch.tokens, batch.token_lengths)[1].flatten()
        loss = F.cross_entropy(
            logits, targets, ignore_index=PAD_ID, label_smoothing=self.config.label_smoothing
        )
        with torch.no_grad():
            nll = (
                loss
                if self.config.label_smoothing == 0
                else F.cross_entropy(logits, targets, ignore_index=PAD_ID)
            )
            valid = targets != PAD_ID
            accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        return {"loss": loss, "nll": nll.detach(), "accuracy": accuracy}
