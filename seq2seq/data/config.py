"""``DataConfig``: which manifests to read and how to batch and featurise them (no Lightning here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.core.audio import FeatureConfig


@dataclass(frozen=True)
class DataConfig:
    """Data settings of a training run.

    Attributes:
        train_manifest: JSON Lines manifest of the training set.
        dev_manifest: manifest used for validation.
        test_manifest: manifest used by ``trainer.test`` and evaluation.
        max_frames: padded feature frames per batch (batch size x longest utterance); 20000 frames is 200 s
            of audio at 10 ms frames.
        max_batch_size: optional cap on utterances per batch.
        max_duration: utterances longer than this many seconds are left out of training (None keeps all).
        num_workers: DataLoader worker processes.
        cache_features: keep log-Mel features after computing them once.
        cache_dir: folder for the on-disk feature cache; None keeps the cache in memory.
        seed: seed of batch composition and order.
        features: log-Mel settings (sample rate, bands, hop).
    """

    train_manifest: str = "data/synthetic/train.jsonl"
    dev_manifest: str = "data/synthetic/dev.jsonl"
    test_manifest: str | None = "data/synthetic/test.jsonl"
    max_frames: int = 20000
    max_batch_size: int | None = None
    max_duration: float | None = None
    num_workers: int = 2
    cache_features: bool = True
    cache_dir: str | None = None
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if self.max_frames <= 0:
            raise ValueError(f"DataConfig.max_frames must be > 0, got {self.max_frames}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"DataConfig.max_batch_size must be >= 1 or null, got {self.max_batch_size}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"DataConfig.max_duration must be > 0 or null, got {self.max_duration}")
        if self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers must be >= 0, got {self.num_workers}")
        if not self.train_manifest:
            raise ValueError("DataConfig.train_manifest must name a manifest file")
