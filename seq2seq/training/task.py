"""What every recipe's LightningModule shares: bad-batch guard, logging, optimizer, checkpoint metadata."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from seq2seq.core.config import to_dict
from seq2seq.core.text import PAD_ID, Tokenizer
from seq2seq.training.optim import BadBatchGuard, budget_progress, build_optimizer


def token_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of next-token logits (B, U, V) against targets (B, U), PAD ignored, and the (detached)
    accuracy over the real targets: the attention decoder's loss of ASR and text2text, and the LM's."""
    loss = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD_ID, label_smoothing=label_smoothing
    )
    valid = targets != PAD_ID
    return loss, (logits.argmax(-1) == targets)[valid].float().mean().detach()


class Seq2SeqTask(L.LightningModule):
    """A thin shell around a plain ``nn.Module`` (``self.model``); subclasses define ``losses``.

    Args:
        config: the experiment config (saved as plain data in every checkpoint).
        tokenizer: the run's tokenizer; its folder is recorded so ``export`` can package it.
        tokenizer_dir: folder the tokenizer was saved in.
    """

    def __init__(self, config: Any, tokenizer: Tokenizer, tokenizer_dir: str):
        super().__init__()
        self.config = config
        self.tokenizer, self.tokenizer_dir = tokenizer, str(tokenizer_dir)
        self.guard = BadBatchGuard(config.trainer.max_bad_batches)

    def forward_batch(self, batch) -> Any:
        """The model's teacher-forced pass over a batch (export re-estimates norm statistics with it)."""
        raise NotImplementedError

    def losses(self, batch) -> dict[str, torch.Tensor]:
        """The named loss terms of a batch; ``"loss"`` is what is optimised."""
        raise NotImplementedError

    @staticmethod
    def batch_size(batch) -> int:
        return len(batch.ids)

    def training_step(self, batch, batch_idx: int):
        losses = self.losses(batch)
        if not self.guard.check(losses["loss"], self.trainer, self.global_step):
            return None  # skipped: no backward, no optimizer step
        terms = {f"train_{k}": v.detach() for k, v in losses.items() if k != "loss"}
        self.log_dict(terms, batch_size=self.batch_size(batch))
        self.log("train_loss", losses["loss"].detach(), prog_bar=True, batch_size=self.batch_size(batch))
        return losses["loss"]

    def log_validation_losses(self, losses: dict[str, torch.Tensor], size: int) -> None:
        terms = {f"val_{k}": v for k, v in losses.items() if k != "loss"}
        self.log_dict(terms, batch_size=size, sync_dist=True)
        self.log("val_loss", losses["loss"], prog_bar=True, batch_size=size, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        if batch is not None:  # None: every utterance of the batch was unreadable (each was reported)
            self.log_validation_losses(self.losses(batch), self.batch_size(batch))

    def configure_optimizers(self):
        optim = self.config.optim
        progress = None if optim.decay_minutes is None else budget_progress(self.trainer, optim.decay_minutes)
        mixed = self.config.trainer.precision not in ("32-true", "32")  # AMP cannot clip a fused AdamW
        return build_optimizer(self.model, optim, progress, allow_fused=not mixed)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain data only, so inference can read checkpoints with weights_only=True.
        checkpoint["seq2seq"] = {
            "task": self.config.task,
            "config": to_dict(self.config),
            "tokenizer_dir": self.tokenizer_dir,
        }
