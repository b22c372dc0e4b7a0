"""Features -> text with a loaded ASR package; plain PyTorch, usable without Lightning."""

from __future__ import annotations

import dataclasses

import torch

from seq2seq.decoding import DecodingConfig, decode_batch
from seq2seq.package import ModelPackage, PackageError


class Transcriber:
    """Decodes batches of features with an ASR package.

    Args:
        package: a loaded ASR model package.
        beam_size: beam width (1 with ``ctc_weight=0`` is greedy).
        ctc_weight: weight of the CTC prefix score.
    """

    def __init__(self, package: ModelPackage, beam_size: int | None = None, ctc_weight: float | None = None):
        if package.task != "asr":
            raise PackageError(
                f"{package.path}: a {package.task} package cannot transcribe; use an ASR package"
            )
        self.package = package
        changes = {k: v for k, v in (("beam_size", beam_size), ("ctc_weight", ctc_weight)) if v is not None}
        self.config: DecodingConfig = dataclasses.replace(package.config.decoding, **changes)

    @property
    def model(self) -> torch.nn.Module:
        return self.package.model

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """features: (B, T, F) log-Mel; lengths: (B,) -> B transcripts."""
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or infinite values; check the audio's sample values")
        device = next(self.model.parameters()).device
        tokens = decode_batch(self.model, features.to(device), lengths.to(device), self.config)
        return [self.package.tokenizer.decode(t) for t in tokens]
