"""The text-to-text LightningModule: attention cross-entropy (plus optional CTC), greedy PER/WER on dev."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.text import WordErrorRate

from seq2seq.core.text import BLANK_ID, TokenizerPair
from seq2seq.decoding.greedy import greedy_search
from seq2seq.experiments import Text2TextExperimentConfig
from seq2seq.models.text2text import Text2TextModel
from seq2seq.training.asr_module import decoder_io
from seq2seq.training.task import Seq2SeqTask, token_loss


class Text2TextTask(Seq2SeqTask):
    """Trains a :class:`Text2TextModel` with ``ctc_weight * CTC + (1 - ctc_weight) * attention``."""

    def __init__(self, config: Text2TextExperimentConfig, tokenizer: TokenizerPair, tokenizer_dir: str):
        super().__init__(config, tokenizer, tokenizer_dir)
        self.model = Text2TextModel(config.model)
        self.per, self.wer = WordErrorRate(), MeanMetric()  # PER: WER over phoneme symbols

    def forward_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, _ = decoder_io(batch.tokens, batch.token_lengths)
        return self.model(batch.sources, batch.source_lengths, inputs, batch.token_lengths + 1)

    def losses(self, batch) -> dict[str, torch.Tensor]:
        ctc_log_probs, memory_lengths, logits = self.forward_batch(batch)
        _, targets = decoder_io(batch.tokens, batch.token_lengths)
        attention, accuracy = token_loss(logits, targets, self.config.label_smoothing)
        losses = {"attention_loss": attention, "attention_accuracy": accuracy}
        weight = self.config.ctc_weight
        if weight == 0.0:
            return {"loss": attention, **losses}
        ctc = F.ctc_loss(
            ctc_log_probs.transpose(0, 1),
            batch.tokens,
            memory_lengths,
            batch.token_lengths,
            blank=BLANK_ID,
            zero_infinity=True,  # a target longer than its source has no CTC path
        )
        return {"loss": weight * ctc + (1 - weight) * attention, "ctc_loss": ctc, **losses}

    def validation_step(self, batch, batch_idx: int) -> None:
        """Losses, and the PER/WER of greedy decoding against the batch's targets (one reference each;
        ``seq2seq evaluate`` scores beam search against every reference)."""
        self.log_validation_losses(self.losses(batch), self.batch_size(batch))
        ratio = self.config.decoding.max_length_ratio
        hypotheses = greedy_search(self.model, batch.sources, batch.source_lengths, ratio)
        decode = self.tokenizer.target.decode
        predictions = [decode(h) for h in hypotheses]
        references = [decode(t[:n].tolist()) for t, n in zip(batch.tokens, batch.token_lengths)]
        self.per.update(predictions, references)
        self.wer.update(torch.tensor([float(p != r) for p, r in zip(predictions, references)]))

    def on_validation_epoch_end(self) -> None:
        self.log("val_per", self.per.compute(), prog_bar=True, sync_dist=True)
        self.log("val_wer", self.wer.compute(), prog_bar=True, sync_dist=True)
        self.per.reset()
        self.wer.reset()
