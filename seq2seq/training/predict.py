"""Batch transcription through Lightning's predict loop, which places work on GPUs when present."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch

from seq2seq.inference.transcriber import Transcriber


class TranscriptionPredictor(L.LightningModule):
    """Wraps a :class:`Transcriber`; each predict step returns ``[(segment, text or None)]``."""

    def __init__(self, transcriber: Transcriber):
        super().__init__()
        self.transcriber = transcriber
        self.model = transcriber.model  # registered, so Lightning moves it to the device

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        segments, features, lengths = batch
        if features is None:
            return batch
        return segments, features.to(device), lengths.to(device)

    def predict_step(self, batch, batch_idx: int):
        segments, features, lengths = batch
        texts = iter(self.transcriber(features, lengths) if features is not None else [])
        return [(segment, None if segment.error else next(texts)) for segment in segments]


def run_predict(transcriber: Transcriber, loader: torch.utils.data.DataLoader, accelerator: str = "auto"):
    """All ``(segment, text)`` pairs of ``loader`` in order."""
    quiet_lightning()
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    outputs = trainer.predict(TranscriptionPredictor(transcriber), dataloaders=loader)
    return [pair for batch in outputs for pair in batch]


def quiet_lightning() -> None:
    """Inference output is the results; Lightning's start-up banners only get in the way."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
