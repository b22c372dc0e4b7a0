"""Lightning DataModules for ASR, TTS, LM and text-to-text: manifests (or text) -> datasets ->
bucketed, rank-sharded, resumable loaders.

Build the Trainer with ``use_distributed_sampler=False``: ``BucketBatchSampler`` shards by rank itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from seq2seq.core.audio import GlobalCMVN
from seq2seq.core.text import Tokenizer, TokenizerPair, load_tokenizer, train_tokenizer
from seq2seq.data.config import DataConfig, LMDataConfig
from seq2seq.data.datasets import (
    ASRDataset,
    TTSDataset,
    collate_asr,
    collate_tts,
    frames_from_duration,
    load_features,
)
from seq2seq.data.manifest import Utterance, read_manifest
from seq2seq.data.sampler import BucketBatchSampler
from seq2seq.data.text_corpus import TextDataset, collate_text, read_sentences
from seq2seq.data.text_pairs import TextPairDataset, collate_text_pairs, read_text_manifest

logger = logging.getLogger(__name__)


class _FollowTrainerEpoch:
    """Batch sampler wrapper that selects the trainer's current epoch whenever a new pass starts.

    Lightning only calls ``set_epoch`` on ``batch_sampler.sampler``, and the DataLoader is built once, so
    the epoch is looked up here, at the start of every pass. Batches are lists of ``(index, epoch)``: the
    epoch travels with each index to the dataset (even in persistent workers) and seeds its augmentation.
    """

    def __init__(
        self, sampler: BucketBatchSampler, epoch: Callable[[], int], on_start: Callable[[int], None]
    ):
        self.sampler = sampler
        self._epoch = epoch
        self._on_start = on_start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self._epoch()
        self.sampler.set_epoch(epoch)
        self._on_start(self.sampler.resume_position)
        return ([(index, epoch) for index in batch] for batch in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class _SpeechDataModule(L.LightningDataModule):
    """Shared plumbing; subclasses choose the dataset class and collate function."""

    dataset_cls: type[ASRDataset] = ASRDataset
    collate: Callable = staticmethod(collate_asr)

    def __init__(self, config: DataConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.datasets: dict[str, ASRDataset] = {}
        self.train_sampler: BucketBatchSampler | None = None
        self._consumed = 0  # training batches handed to the model in the current epoch
        self._pending_state: dict[str, Any] | None = None

    @staticmethod
    def texts(path: str) -> list[str]:
        """The transcripts of a split's manifest (what a tokenizer is trained on)."""
        return [u.text for u in read_manifest(path)[0]]

    def _budget(self) -> int:
        """Padded length per batch that the bucketing sampler fills."""
        return self.config.max_frames

    def _manifests(self) -> dict[str, str]:
        named = {"train": self.config.train_manifest, "dev": self.config.dev_manifest}
        if self.config.test_manifest:
            named["test"] = self.config.test_manifest
        return {split: path for split, path in named.items() if path}

    def _dataset(self, split: str) -> ASRDataset:
        if split not in self.datasets:
            paths = self.config.train_manifests if split == "train" else (self._manifests()[split],)
            utterances = []
            for path in paths:
                read, problems = read_manifest(path)
                for problem in problems:
                    logger.warning("%s", problem)
                utterances += read
            self.datasets[split] = self.dataset_cls(
                self._filter(split, utterances),
                self.tokenizer,
                self.config.features,
                self.config.cache_features,
                self.config.cache_dir,
                skip_unreadable=True,  # one broken file costs its utterance, not the run
                augment=self.config.augment if split == "train" else None,  # never dev or test
                seed=self.config.seed,
            )
        return self.datasets[split]

    def _filter(self, split: str, utterances: list[Utterance]) -> list[Utterance]:
        utterances = self._usable(split, utterances)
        limit = self.config.max_duration
        if split != "train" or limit is None:
            return utterances
        kept = [u for u in utterances if u.duration <= limit]
        if len(kept) < len(utterances):
            logger.warning(
                "train: left out %d utterances longer than %.1f s", len(utterances) - len(kept), limit
            )
        return kept

    def _usable(self, split: str, utterances: list[Utterance]) -> list[Utterance]:
        """Leave out (one warning each) utterances whose audio is missing or whose text is empty or too long.

        Only a cheap existence check here; files that exist but cannot be decoded are skipped when read.
        """
        kept = []
        for u in utterances:
            if not Path(u.audio_filepath).is_file():
                logger.warning(
                    "%s: %s: no such file (utterance '%s' left out)", split, u.audio_filepath, u.id
                )
            elif not u.text.strip():
                logger.warning("%s: utterance '%s' has empty text (left out)", split, u.id)
            elif len(u.text) > (frames := frames_from_duration(u.duration, self.config.features)):
                # Over one character per 10 ms frame: no alignment exists, and attention over it costs hours.
                logger.warning(
                    "%s: utterance '%s' has %d characters of text for %d frames of audio (left out)",
                    split,
                    u.id,
                    len(u.text),
                    frames,
                )
            else:
                kept.append(u)
        return kept

    def prepare_data(self) -> None:
        """Fill the on-disk feature cache once (rank 0 only), so ranks and epochs only read it."""
        if self.config.cache_features and self.config.cache_dir:
            for split in self._manifests():
                self._dataset(split).features.build(self.config.num_workers)

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "dev"), "validate": ("dev",), "test": ("test",)}.get(stage or "fit", ())
        for split in splits:
            if split in self._manifests():
                self._dataset(split)

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, batch_sampler: Any) -> DataLoader:
        workers = self.config.num_workers
        return DataLoader(
            self._dataset(split),
            batch_sampler=batch_sampler,
            collate_fn=type(self).collate,
            num_workers=workers,
            persistent_workers=workers > 0,  # keeps each worker's in-memory feature cache across epochs
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        dataset = self._dataset("train")
        cfg = self.config
        self.train_sampler = BucketBatchSampler(
            dataset.num_frames, self._budget(), True, cfg.seed, world, rank, max_batch_size=cfg.max_batch_size
        )
        if self._pending_state is not None:
            self.train_sampler.load_state_dict(self._pending_state)
            self._pending_state = None
        wrapped = _FollowTrainerEpoch(
            self.train_sampler,
            epoch=self._current_epoch,
            on_start=self._start_epoch,
        )
        return self._loader("train", wrapped)

    def _evaluation_loader(self, split: str) -> DataLoader:
        rank, world = self._rank_and_world()
        dataset = self._dataset(split)
        sampler = BucketBatchSampler(
            dataset.num_frames, self._budget(), False, self.config.seed, world, rank,
            max_batch_size=self.config.max_batch_size,
        )  # fmt: skip
        return self._loader(split, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("dev")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def _current_epoch(self) -> int:
        if self.trainer is not None:
            return self.trainer.current_epoch
        return self.train_sampler.epoch if self.train_sampler is not None else 0

    def _start_epoch(self, resume_position: int) -> None:
        self._consumed = resume_position

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Counted here, in the main process, as batches reach the model: the sampler itself runs ahead by
        # the workers' prefetch, so its own count would skip unseen batches on resume.
        if self.trainer is not None and self.trainer.training:
            self._consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Sampler position (epoch and training batches consumed), stored by Lightning in checkpoints."""
        if self.train_sampler is None:
            return {}
        state = self.train_sampler.state_dict()
        return {"train_sampler": {**state, "batches_yielded": self._consumed}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume mid-epoch: the next training pass yields only the batches not yet consumed."""
        state = state_dict.get("train_sampler")
        if state is None:
            return
        if self.train_sampler is None:
            self._pending_state = dict(state)  # applied when train_dataloader builds the sampler
        else:
            self.train_sampler.load_state_dict(state)
        self._consumed = int(state["batches_yielded"])

    def feature_statistics(self, max_utterances: int | None = None) -> GlobalCMVN:
        """``GlobalCMVN`` from the training features (the first ``max_utterances`` if given)."""
        dataset = self._dataset("train")
        count = len(dataset) if max_utterances is None else min(max_utterances, len(dataset))
        features = (load_features(dataset.features, i) for i in range(count))
        return GlobalCMVN.from_features(f for f in features if f is not None)


class ASRDataModule(_SpeechDataModule):
    """ASR batches (``ASRBatch``): log-Mel features in, token ids out.

    Args:
        config: manifests, batching and features.
        tokenizer: turns transcripts into ids.
    """

    dataset_cls = ASRDataset
    collate = staticmethod(collate_asr)


class TTSDataModule(_SpeechDataModule):
    """TTS batches (``TTSBatch``): token ids in, log-Mel frames out.

    Args:
        config: manifests, batching and features (the Mel frames are the targets).
        tokenizer: turns text (or phonemes) into ids.
    """

    dataset_cls = TTSDataset
    collate = staticmethod(collate_tts)


class LMDataModule(_SpeechDataModule):
    """Language-model batches (``TextBatch``): token ids of sentences from text files or manifests.

    Lines that cannot be read are reported (``FILE:LINE: reason``) and left out; so are training
    sentences longer than ``max_length`` tokens. Bucketing, rank sharding and mid-epoch resume are the
    speech modules' own.

    Args:
        config: text files and batching.
        tokenizer: turns sentences into ids (its normalizer first).
    """

    collate = staticmethod(collate_text)

    def __init__(self, config: LMDataConfig, tokenizer: Tokenizer) -> None:
        super().__init__(config, tokenizer)  # type: ignore[arg-type]

    @staticmethod
    def texts(path: str) -> list[str]:
        sentences, problems = read_sentences(path)
        for problem in problems:
            logger.warning("%s", problem)
        return sentences

    def _budget(self) -> int:
        return self.config.max_tokens

    def _dataset(self, split: str) -> TextDataset:
        if split not in self.datasets:
            limit = self.config.max_length if split == "train" else None
            dataset = TextDataset(self.texts(self._manifests()[split]), self.tokenizer, limit)
            if dataset.empty:
                logger.warning("%s: left out %d sentences empty after normalization", split, dataset.empty)
            if dataset.too_long:
                logger.warning("train: left out %d sentences longer than %d tokens", dataset.too_long, limit)
            self.datasets[split] = dataset
        return self.datasets[split]

    def prepare_data(self) -> None:
        """Nothing to cache: text is read and encoded when a split is first used."""

    def feature_statistics(self, max_utterances: int | None = None) -> None:
        """No features, so no statistics (the model has none to set)."""
        return None


class TextPairDataModule(_SpeechDataModule):
    """Text-to-text batches (``TextBatch``): source ids in, target ids out; bucketed by the longer side.

    It shares the speech modules' bucketing, rank sharding and mid-epoch resume; only the dataset
    differs (no audio, so no feature cache and no statistics).

    Args:
        config: text-pair manifests and batching.
        tokenizer: the source and target tokenizers.
    """

    collate = staticmethod(collate_text_pairs)

    def _dataset(self, split: str) -> TextPairDataset:  # type: ignore[override]
        if split not in self.datasets:
            pairs, problems = read_text_manifest(self._manifests()[split])
            for problem in problems:
                logger.warning("%s", problem)
            everything = split == "train" and self.config.train_on_references
            self.datasets[split] = TextPairDataset(pairs, self.tokenizer, all_references=everything)
        return self.datasets[split]

    def prepare_data(self) -> None:
        """Nothing to cache: tokenising a word costs less than reading it back."""

    @staticmethod
    def prepare_tokenizer(experiment, out_dir: Path) -> tuple[TokenizerPair, Path]:
        """The run's source and target tokenizers, built from the training manifest the first time."""
        directory = out_dir / "tokenizer"
        if (directory / "tokenizer.json").is_file():
            return load_tokenizer(directory), directory
        pairs, _ = read_text_manifest(experiment.data.train_manifest)

        def side(texts: list[str], name: str, spec, normalizer) -> Tokenizer:
            return train_tokenizer(texts, directory / name, spec.kind, spec.vocab_size, normalizer)

        source = side([p.text for p in pairs], "source", experiment.source_tokenizer, experiment.source_text)
        targets = [r for p in pairs for r in p.references]
        target = side(targets, "target", experiment.target_tokenizer, experiment.target_text)
        pair = TokenizerPair(source, target)
        pair.save(directory)  # its tokenizer.json last: a run killed before it builds them again
        logger.info(
            "tokenizers: %d source, %d target ids -> %s", source.vocab_size, target.vocab_size, directory
        )
        return pair, directory
