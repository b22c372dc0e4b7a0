"""Datasets and collate functions for ASR (features -> tokens) and TTS (tokens -> Mel frames).

Features are log-Mel *before* CMVN (the model owns its statistics). Computing them is the costly part of
loading, so ``FeatureStore`` can keep them in memory or in one safetensors file on disk: after the first
pass (or a ``build`` with worker processes) epochs only read.

A training set given an active ``AugmentConfig`` reads audio and computes features every time instead:
waveform augmentation (``seq2seq.data.augment``) cannot be applied to cached log-Mels, so its feature
cache is bypassed (dev and test sets, built without augmentation, keep theirs). Its items are then looked
up as ``dataset[(index, epoch)]``, so the epoch seeds the augmentation even in persistent workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from seq2seq.core.audio import AudioError, FeatureConfig, LogMel, num_frames, read_audio
from seq2seq.core.text import PAD_ID, Tokenizer
from seq2seq.data.augment import WaveAugment
from seq2seq.data.config import AugmentConfig
from seq2seq.data.manifest import Utterance

# Cached features are float16: log-Mel values span about [-14, 12], where float16 steps are <= 0.008,
# far below the noise SpecAugment and CMVN work with, and the cache takes half the memory.
CACHE_DTYPE = torch.float16

logger = logging.getLogger(__name__)


def frames_from_duration(duration: float, config: FeatureConfig) -> int:
    """Feature frames of an utterance, from its manifest duration (no audio is read)."""
    return int(num_frames(round(duration * config.sample_rate), config.hop_length))


class FeatureStore:
    """Log-Mel features of a list of utterances, computed on demand and optionally cached.

    Args:
        utterances: the utterances, indexed in this order.
        config: feature settings.
        cache: keep features after computing them (in memory, or on disk with ``cache_dir``).
        cache_dir: folder for ``features-<key>.safetensors``; the key hashes the settings and the utterances,
            so a changed manifest or config never reads stale features.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        config: FeatureConfig,
        cache: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.utterances = list(utterances)
        self.config = config
        self.cache = cache
        self.path = (
            None
            if cache_dir is None or not cache
            else Path(cache_dir) / f"features-{self._key()}.safetensors"
        )
        self._memory: dict[int, torch.Tensor] = {}
        self._file: Any = None
        self._cached_keys: set[str] = set()
        self._logmel: LogMel | None = None

    def _key(self) -> str:
        description = [asdict(self.config)] + [
            [u.id, u.audio_filepath, u.offset, u.duration] for u in self.utterances
        ]
        return hashlib.sha1(json.dumps(description).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes reopen the (memory-mapped) file themselves; open handles do not pickle.
        return {**self.__dict__, "_file": None, "_cached_keys": set()}

    def wave(self, index: int) -> torch.Tensor:
        """Waveform of utterance ``index`` at the feature sample rate: (N,) float32."""
        u = self.utterances[index]
        return read_audio(u.audio_filepath, self.config.sample_rate, u.offset, u.duration)

    def featurize(self, wave: torch.Tensor, warp: float = 1.0) -> torch.Tensor:
        """Features of a waveform: (N,) -> (T, n_mels) float32 (``warp``: VTLP's factor, training only)."""
        if self._logmel is None:
            self._logmel = LogMel(self.config)
        with torch.no_grad():
            return self._logmel.single(wave, warp)

    def compute(self, index: int) -> torch.Tensor:
        """Features of utterance ``index`` from its audio: (T, n_mels) float32."""
        return self.featurize(self.wave(index))

    def __getitem__(self, index: int) -> torch.Tensor:
        """Features of utterance ``index``: (T, n_mels) float32, from the cache when possible."""
        if self.path is not None and (self._file is not None or self.path.is_file()):
            if self._file is None:
                self._file = safe_open(str(self.path), framework="pt")
                self._cached_keys = set(self._file.keys())
            if str(index) in self._cached_keys:
                return self._file.get_tensor(str(index)).float()
            return self.compute(index)  # unreadable when the cache was built: raises its AudioError again
        if index in self._memory:
            return self._memory[index].float()
        feats = self.compute(index)
        if self.cache:
            self._memory[index] = feats.to(CACHE_DTYPE)
        return feats

    def build(self, num_workers: int = 0) -> None:
        """Compute every utterance's features now and fill the cache (written atomically when on disk)."""
        if not self.cache or (self.path is not None and self.path.is_file()):
            return
        loader = DataLoader(_Compute(self), batch_size=None, num_workers=num_workers)
        features = {index: feats.to(CACHE_DTYPE) for index, feats in loader if feats is not None}
        if self.path is None:
            self._memory.update(features)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        save_file({str(i): f.contiguous() for i, f in features.items()}, str(tmp))
        os.replace(tmp, self.path)


class _Compute(Dataset):
    """Adapter so ``FeatureStore.build`` can compute features in DataLoader worker processes."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None]:
        return index, load_features(self.store, index)


def load_features(store: FeatureStore, index: int) -> torch.Tensor | None:
    """``store[index]``, or None (and a one-line warning) when its audio cannot be read.

    A broken file costs its own utterance only; the rest of the run continues.
    """
    try:
        return store[index]
    except AudioError as error:
        logger.warning("%s (utterance '%s' skipped)", error, store.utterances[index].id)
        return None


class ASRDataset(Dataset):
    """Utterances as ``{"id", "features" (T, n_mels), "tokens" (U,)}``; tokens have no SOS/EOS.

    Transcripts are encoded once here, so the tokenizer's ``unknown_counts`` reflect the whole set.

    Args:
        utterances: manifest entries.
        tokenizer: turns transcripts into ids.
        feature_config: log-Mel settings (default ``FeatureConfig()``).
        cache_features: keep features after the first computation.
        cache_dir: where to keep them on disk (memory when None).
        skip_unreadable: an utterance whose audio cannot be read becomes None (reported in one warning
            line, dropped by the collate functions) instead of raising ``AudioError``; for training.
        augment: waveform augmentation; give it for the training split only. When active (some
            ``p_* > 0``) features are computed on the fly (``cache_features`` is ignored) and
            ``num_frames`` allows for the slowest speed factor, so batches stay within their frame budget.
        seed: seeds the augmentation, with the utterance index and the epoch of ``dataset[(index, epoch)]``
            (a plain ``dataset[index]`` is epoch 0).
    """

    augmentable = True  # whether waveform augmentation makes sense for this dataset's features

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: Tokenizer,
        feature_config: FeatureConfig | None = None,
        cache_features: bool = False,
        cache_dir: str | Path | None = None,
        skip_unreadable: bool = False,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.utterances = list(utterances)
        self.skip_unreadable = skip_unreadable
        feature_config = feature_config or FeatureConfig()
        augmenting = augment is not None and augment.active
        if augmenting and not self.augmentable:
            raise ValueError(
                f"data.augment: {type(self).__name__} features are targets and are never augmented; "
                "set every p_* to 0"
            )
        if augmenting and cache_features:
            logger.info("data.augment is on: training features are computed on the fly (cache bypassed)")
        # Waveform steps cannot be applied to cached log-Mels, so an augmented set caches nothing.
        self.features = FeatureStore(
            self.utterances, feature_config, cache_features and not augmenting, cache_dir
        )
        self.augment = (
            WaveAugment(
                augment,
                feature_config.sample_rate,
                seed,
                read=self.features.wave,
                speakers=[u.speaker for u in self.utterances],
            )
            if augmenting and augment is not None
            else None
        )
        self.tokens = [torch.tensor(tokenizer.encode(u.text), dtype=torch.long) for u in self.utterances]
        # Upper bounds of the frames items can have, for the sampler's budget (speed 0.9 lengthens).
        stretch = 1.0 if self.augment is None else self.augment.max_stretch
        durations = [u.duration * stretch for u in self.utterances]
        self.num_frames = [frames_from_duration(d, feature_config) for d in durations]

    def __len__(self) -> int:
        return len(self.utterances)

    def _features(self, index: int, epoch: int) -> torch.Tensor | None:
        if self.augment is None:
            return load_features(self.features, index) if self.skip_unreadable else self.features[index]
        try:
            wave = self.augment(self.features.wave(index), index, epoch)
            return self.features.featurize(wave, self.augment.warp_factor(index, epoch))
        except AudioError as error:
            if not self.skip_unreadable:
                raise
            logger.warning("%s (utterance '%s' skipped)", error, self.utterances[index].id)
            return None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        """Item ``index`` or ``(index, epoch)``; None when its audio is unreadable and ``skip_unreadable``."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        features = self._features(index, epoch)
        if features is None:
            return None
        return {"id": self.utterances[index].id, "features": features, "tokens": self.tokens[index]}


class TTSDataset(ASRDataset):
    """Utterances as ``{"id", "tokens" (L,), "mels" (T, n_mels)}``: the ASR pair seen from the other side.

    The mels are the model's targets, so an active ``augment`` is refused (a ``ValueError``).
    """

    augmentable = False

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        mels = self._features(index, epoch)
        if mels is None:
            return None
        return {"id": self.utterances[index].id, "tokens": self.tokens[index], "mels": mels}


def _pad(sequences: list[torch.Tensor], value: float) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.long)
    return pad_sequence(sequences, batch_first=True, padding_value=value), lengths


class _Batch:
    """Device moves and pinning for the tensor fields of a batch dataclass."""

    def to(self, device: torch.device | str, non_blocking: bool = False):
        moved = {
            f.name: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return type(self)(**moved)

    def pin_memory(self):
        return type(self)(**{f.name: _pin(getattr(self, f.name)) for f in fields(self)})


def _pin(value: Any) -> Any:
    return value.pin_memory() if torch.is_tensor(value) else value


@dataclass
class ASRBatch(_Batch):
    """A padded ASR batch.

    Attributes:
        ids: utterance ids, length B.
        features: (B, T, n_mels) log-Mel, zero-padded.
        feature_lengths: (B,) valid frames.
        tokens: (B, U) token ids padded with ``PAD_ID``, without SOS/EOS.
        token_lengths: (B,) valid tokens.
    """

    ids: list[str]
    features: torch.Tensor
    feature_lengths: torch.Tensor
    tokens: torch.Tensor
    token_lengths: torch.Tensor


@dataclass
class TTSBatch(_Batch):
    """A padded TTS batch.

    Attributes:
        ids: utterance ids, length B.
        tokens: (B, L) input token ids padded with ``PAD_ID``.
        token_lengths: (B,) valid tokens.
        mels: (B, T, n_mels) target log-Mel frames, zero-padded.
        mel_lengths: (B,) valid frames.
    """

    ids: list[str]
    tokens: torch.Tensor
    token_lengths: torch.Tensor
    mels: torch.Tensor
    mel_lengths: torch.Tensor


def collate_asr(items: list[dict[str, Any] | None]) -> ASRBatch | None:
    """Pad ``ASRDataset`` items into an ``ASRBatch``; unreadable (None) items are dropped, None if all are."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    features, feature_lengths = _pad([item["features"] for item in items], 0.0)
    tokens, token_lengths = _pad([item["tokens"] for item in items], PAD_ID)
    return ASRBatch([item["id"] for item in items], features, feature_lengths, tokens, token_lengths)


def collate_tts(items: list[dict[str, Any] | None]) -> TTSBatch | None:
    """Pad ``TTSDataset`` items into a ``TTSBatch``; unreadable (None) items are dropped, None if all are."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    tokens, token_lengths = _pad([item["tokens"] for item in items], PAD_ID)
    mels, mel_lengths = _pad([item["mels"] for item in items], 0.0)
    return TTSBatch([item["id"] for item in items], tokens, token_lengths, mels, mel_lengths)
