"""ASR/TTS datasets, padding collates, the feature cache, and the DataModules' sampler plumbing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from seq2seq.core.audio import AudioError, FeatureConfig, LogMel, read_audio
from seq2seq.core.text import EOS_ID, PAD_ID, SOS_ID, CharTokenizer
from seq2seq.data.config import DataConfig
from seq2seq.data.datasets import (
    ASRDataset,
    FeatureStore,
    TTSDataset,
    collate_asr,
    collate_tts,
    frames_from_duration,
)
from seq2seq.data.manifest import Utterance, write_manifest
from seq2seq.training.datamodules import ASRDataModule, TTSDataModule

TEXTS = ["turn on the lights", "set a timer", "play some jazz music", "hello"]


@pytest.fixture
def utterances(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i, (text, seconds) in enumerate(zip(TEXTS, [0.5, 0.31, 1.0, 0.2])):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(round(seconds * 16000))).astype(np.float32), 16000)
        items.append(Utterance(str(path), seconds, text))
    return items


@pytest.fixture
def tokenizer():
    return CharTokenizer.build(TEXTS)


def test_asr_items_and_batch(utterances, tokenizer):
    dataset = ASRDataset(utterances, tokenizer, FeatureConfig())
    item = dataset[0]
    assert item["id"] == "u0" and item["features"].shape == (51, 80)
    assert item["tokens"].tolist() == tokenizer.encode(TEXTS[0])
    assert SOS_ID not in item["tokens"] and EOS_ID not in item["tokens"]
    assert (
        dataset.num_frames
        == [51, 32, 101, 21]
        == [frames_from_duration(u.duration, FeatureConfig()) for u in utterances]
    )
    batch = collate_asr([dataset[i] for i in range(4)])
    assert batch.features.shape == (4, 101, 80)
    assert batch.feature_lengths.tolist() == [51, 32, 101, 21]
    assert batch.token_lengths.tolist() == [len(t) for t in TEXTS]
    assert batch.tokens.shape == (4, 20) and (batch.tokens[3, 5:] == PAD_ID).all()
    assert batch.features[1, 32:].abs().sum() == 0
    expected = LogMel(FeatureConfig()).single(read_audio(utterances[1].audio_filepath))
    torch.testing.assert_close(batch.features[1, :32], expected)  # features before CMVN


def test_tts_items_and_batch(utterances, tokenizer):
    dataset = TTSDataset(utterances, tokenizer, FeatureConfig())
    batch = collate_tts([dataset[2], dataset[3]])
    assert batch.ids == ["u2", "u3"]
    assert batch.mels.shape == (2, 101, 80) and batch.mel_lengths.tolist() == [101, 21]
    assert batch.tokens.shape == (2, 20) and batch.token_lengths.tolist() == [20, 5]
    moved = batch.to("cpu")
    assert moved.ids == batch.ids and torch.equal(moved.mels, batch.mels)


def test_disk_cache_is_reused_and_keyed_by_content(utterances, tmp_path, monkeypatch):
    store = FeatureStore(utterances, FeatureConfig(), cache=True, cache_dir=tmp_path / "cache")
    fresh = [store.compute(i) for i in range(len(store))]
    store.build()
    assert store.path is not None and store.path.is_file()
    reopened = FeatureStore(utterances, FeatureConfig(), cache=True, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(FeatureStore, "compute", lambda self, i: pytest.fail("recomputed a cached feature"))
    for i, feats in enumerate(fresh):
        torch.testing.assert_close(reopened[i], feats, atol=0.02, rtol=0.0)  # float16 storage
    other = FeatureStore(utterances, FeatureConfig(n_mels=40), cache=True, cache_dir=tmp_path / "cache")
    assert other.path != store.path


def test_memory_cache_computes_once(utterances, monkeypatch):
    store = FeatureStore(utterances, FeatureConfig(), cache=True)
    calls = []
    original = FeatureStore.compute
    monkeypatch.setattr(FeatureStore, "compute", lambda self, i: calls.append(i) or original(self, i))
    for _ in range(3):
        store[1]
    assert calls == [1]


def test_missing_and_corrupt_audio_raise_audio_error(utterances, tokenizer, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    bad = [Utterance(str(tmp_path / "gone.wav"), 1.0, "x"), Utterance(str(broken), 1.0, "y")]
    dataset = ASRDataset(bad, tokenizer)
    with pytest.raises(AudioError, match="gone.wav: no such file"):
        dataset[0]
    with pytest.raises(AudioError, match="broken.wav: "):
        dataset[1]


def fake_trainer(epoch=0, rank=0, world=1):
    return SimpleNamespace(current_epoch=epoch, global_rank=rank, world_size=world, training=True)


@pytest.mark.parametrize("module_cls", [ASRDataModule, TTSDataModule])
def test_datamodule_resumes_from_its_state_dict(utterances, tokenizer, tmp_path, module_cls):
    manifest = write_manifest(tmp_path / "train.jsonl", utterances * 1)
    config = DataConfig(str(manifest), str(manifest), None, max_frames=120, num_workers=0)
    module = module_cls(config, tokenizer)
    module.trainer = fake_trainer(epoch=1)
    module.setup("fit")
    loader = module.train_dataloader()
    full = [batch.ids for batch in loader]
    assert sorted(i for ids in full for i in ids) == ["u0", "u1", "u2", "u3"]
    iterator = iter(loader)
    module.on_before_batch_transfer(next(iterator), 0)
    state = module.state_dict()
    assert state["train_sampler"]["epoch"] == 1 and state["train_sampler"]["batches_yielded"] == 1
    resumed = module_cls(config, tokenizer)
    resumed.trainer = fake_trainer(epoch=1)
    resumed.load_state_dict(state)
    resumed.setup("fit")
    assert [batch.ids for batch in resumed.train_dataloader()] == full[1:]
    assert len(module.val_dataloader()) >= 1


def test_data_config_validation():
    with pytest.raises(ValueError, match="max_frames"):
        DataConfig(max_frames=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataConfig(num_workers=-1)


def test_lightning_resume_mid_epoch_sees_exactly_the_remaining_batches(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    rng = np.random.default_rng(0)
    utts = []
    for i in range(12):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(1600 + 160 * i).astype(np.float32), 16000)
        utts.append(Utterance(str(path), (1600 + 160 * i) / 16000, "hello world"))
    manifest = write_manifest(tmp_path / "train.jsonl", utts)
    config = DataConfig(str(manifest), str(manifest), None, max_frames=60, num_workers=0)
    tokenizer = CharTokenizer.build(["hello world"])

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer, self.seen = torch.nn.Linear(80, 1), []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, tuple(batch.ids)))
            return self.layer(batch.features).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(steps, ckpt_path=None, callbacks=()):
        model = Recorder()
        trainer = L.Trainer(
            max_steps=steps, logger=False, enable_checkpointing=bool(callbacks), callbacks=list(callbacks),
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            use_distributed_sampler=False,
        )  # fmt: skip
        trainer.fit(model, ASRDataModule(config, tokenizer), ckpt_path=ckpt_path)
        return model.seen

    full = fit(10)  # 4 batches per epoch
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="mid", every_n_train_steps=6)
    first = fit(7, callbacks=[checkpoint])[:6]
    second = fit(10, ckpt_path=str(tmp_path / "ckpt" / "mid.ckpt"))
    assert first + second == full
