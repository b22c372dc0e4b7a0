"""The language-model LightningModule: next-token cross-entropy (optionally label-smoothed)."""

from __future__ import annotations

import torch

from seq2seq.core.text import Tokenizer
from seq2seq.experiments import LMExperimentConfig
from seq2seq.models.lm import LanguageModel, lm_io
from seq2seq.training.task import Seq2SeqTask, token_loss


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
        logits = self.forward_batch(batch)
        targets = lm_io(batch.tokens, batch.token_lengths)[1]
        loss, accuracy = token_loss(logits, targets, self.config.label_smoothing)
        with torch.no_grad():
            nll = loss if self.config.label_smoothing == 0 else token_loss(logits, targets, 0.0)[0]
        return {"loss": loss, "nll": nll.detach(), "accuracy": accuracy}
