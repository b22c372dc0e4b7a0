"""Corpus-scale decoding through Lightning's predict loop, which places the work on GPUs when present.

It sits above both :mod:`seq2seq.inference` (the decoding itself) and :mod:`seq2seq.training` (the
Lightning shell), so neither imports the other. A single file never comes here: the CLI decodes small
jobs with the plain loop of :class:`~seq2seq.inference.transcribe.Transcriber`, without importing
Lightning.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch

from seq2seq.inference.transcribe import Transcriber, decode_segment_batch


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
        return decode_segment_batch(self.transcriber, batch)


def lightning_decoder(accelerator: str = "auto"):
    """A ``decode`` function for :meth:`Transcriber.transcribe_sources` that runs Lightning predict."""

    def decode(transcriber: Transcriber, loader: torch.utils.data.DataLoader):
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

    return decode


def quiet_lightning() -> None:
    """Inference output is the results; Lightning's start-up banners only get in the way."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
