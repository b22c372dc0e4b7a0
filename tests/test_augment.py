"""Waveform augmentation: each step measured, the dataset hook, seeding by epoch, config and overrides."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from seq2seq.core.audio import AudioError, FeatureConfig, LogMel, mel_filterbank, vtlp_warp
from seq2seq.core.config import ConfigError
from seq2seq.core.text import CharTokenizer
from seq2seq.data.augment import (
    WaveAugment,
    add_at_snr,
    apply_gain,
    band_limit,
    colored_noise,
    reverberate,
    speed_perturb,
    synthetic_rir,
)
from seq2seq.data.config import AugmentConfig, DataConfig
from seq2seq.data.datasets import ASRDataset, TTSDataset
from seq2seq.data.manifest import Utterance, write_manifest
from seq2seq.experiments import load_experiment
from seq2seq.training.datamodules import ASRDataModule

SR = 16000
TEXTS = ["turn on the lights", "set a timer", "play some jazz", "hello"]
EVERY_STEP = AugmentConfig(
    p_speed=1.0,
    p_reverb=1.0,
    p_noise=1.0,
    p_babble=1.0,
    p_telephone=1.0,
    p_gain=1.0,
    p_vtlp=1.0,
    speed_factors=(0.9,),
)


def noise(seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    return torch.randn(round(seconds * SR), generator=torch.Generator().manual_seed(seed))


def tone(hz: float, seconds: float = 0.5) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(round(seconds * SR)) / SR)


def power_db(x: torch.Tensor) -> float:
    return 10 * math.log10(float(x.double().square().mean()))


def band_energy(x: torch.Tensor, low: float, high: float = SR / 2) -> float:
    power = torch.fft.rfft(x.double()).abs().square()
    freqs = torch.fft.rfftfreq(x.shape[0], 1 / SR)
    return float(power[(freqs > low) & (freqs <= high)].sum())


def peak_hz(x: torch.Tensor) -> float:
    return float(torch.fft.rfftfreq(x.shape[0], 1 / SR)[torch.fft.rfft(x).abs().argmax()])


def decay_rt60(rir: torch.Tensor) -> float:
    """RT60 from the Schroeder curve of the tail: 3 x the time from -5 to -25 dB (T20)."""
    tail = rir[1:].double().square()
    edc = tail.flip(0).cumsum(0).flip(0)
    edc_db = 10 * torch.log10(edc / edc[0])
    start, end = int((edc_db < -5).nonzero()[0]), int((edc_db < -25).nonzero()[0])
    return 3 * (end - start) / SR


@pytest.fixture
def utterances(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i, (text, seconds, speaker) in enumerate(zip(TEXTS, [0.5, 0.3, 0.4, 0.2], "aabc")):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(round(seconds * SR))).astype(np.float32), SR)
        items.append(Utterance(str(path), seconds, text, speaker=speaker))
    return items


@pytest.fixture
def tokenizer():
    return CharTokenizer.build(TEXTS)


# ---------------------------------------------------------------------------------------------
# The steps, measured


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch_by_the_factor(factor):
    wave = tone(1000.0)
    fast = speed_perturb(wave, factor, SR)
    assert fast.shape[0] == pytest.approx(wave.shape[0] / factor, abs=2)
    assert peak_hz(fast) == pytest.approx(1000.0 * factor, abs=5.0)  # pitch moves with it, as in Kaldi
    assert speed_perturb(wave, 1.0, SR) is wave


def test_dataset_frames_follow_speed_and_stay_within_num_frames(utterances, tokenizer):
    clean = ASRDataset(utterances, tokenizer)
    for factor in (0.9, 1.1):
        config = AugmentConfig(p_speed=1.0, speed_factors=(factor,))
        sped = ASRDataset(utterances, tokenizer, augment=config)
        frames, base = sped[0]["features"].shape[0], clean[0]["features"].shape[0]
        assert frames == pytest.approx((base - 1) / factor + 1, abs=1.5)
        assert all(sped[i]["features"].shape[0] <= sped.num_frames[i] for i in range(len(sped)))
    assert ASRDataset(utterances, tokenizer, augment=AugmentConfig(p_speed=1.0)).num_frames[0] == 56


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [5.0, 12.5, 20.0])
def test_noise_is_added_at_the_drawn_snr(color, snr):
    wave = 0.3 * tone(440.0)
    mixed = add_at_snr(wave, colored_noise(color, wave.shape[0], torch.Generator().manual_seed(1)), snr)
    assert power_db(wave) - power_db(mixed - wave) == pytest.approx(snr, abs=0.5)


def test_noise_colors_have_their_spectral_slopes():
    """Power per frequency falls as f^0, f^-1, f^-2: measured by a log-log fit over 100 Hz - 4 kHz."""
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    band = (freqs >= 100) & (freqs <= 4000)
    for color, slope in {"white": 0.0, "pink": -1.0, "brown": -2.0}.items():
        x = colored_noise(color, SR, torch.Generator().manual_seed(2))
        power = torch.fft.rfft(x.double()).abs().square()
        fit = np.polyfit(np.log10(freqs[band].numpy()), np.log10(power[band].numpy()), 1)[0]
        assert fit == pytest.approx(slope, abs=0.15), color
        assert power_db(x) == pytest.approx(0.0, abs=1e-3)  # unit RMS


def test_babble_mixes_other_speakers_at_the_drawn_snr():
    talkers = [tone(200.0 * (i + 1), 0.3 + 0.1 * i) for i in range(4)]
    read_calls = []
    config = AugmentConfig(p_babble=1.0, babble_speakers=2, babble_snr_db=(7.0, 7.0))
    augment = WaveAugment(config, SR, read=lambda i: read_calls.append(i) or talkers[i], speakers="aabc")
    wave = 0.2 * noise()
    mixed = augment(wave, index=0, epoch=0)
    assert sorted(read_calls) == [2, 3]  # never itself, never its own speaker "a" while others exist
    assert mixed.shape == wave.shape
    assert power_db(wave) - power_db(mixed - wave) == pytest.approx(7.0, abs=0.5)
    read_calls.clear()
    unknown = WaveAugment(config, SR, read=lambda i: read_calls.append(i) or talkers[i], speakers=[None] * 2)
    for epoch in range(5):
        unknown(wave, index=1, epoch=epoch)
    assert read_calls == [0] * 5  # speakers unknown: any other utterance, but never itself


def test_babble_survives_an_unreadable_other_file():
    def read(index):
        raise AudioError(f"u{index}.wav", "no such file")

    augment = WaveAugment(AugmentConfig(p_babble=1.0), SR, read=read, speakers="ab")
    wave = noise()
    assert torch.equal(augment(wave, 0, 0), wave)


def test_rir_length_decay_rt60_ordering_and_direct_to_reverberant_ratio():
    estimates = []
    for rt60 in (0.2, 0.4, 0.8):
        rir = synthetic_rir(rt60, SR, torch.Generator().manual_seed(3), drr_db=6.0)
        assert rir.shape == (round(rt60 * SR),) and rir[0] == 1.0
        assert 10 * math.log10(1.0 / float(rir[1:].square().sum())) == pytest.approx(6.0, abs=1e-3)
        tail = rir[1:].square()
        tenths = tail[: tail.shape[0] // 10 * 10].reshape(10, -1).sum(1)
        assert (tenths[1:] < tenths[:-1]).all()  # energy decays: each tenth of the tail holds less
        assert 10 * math.log10(tenths[-1] / tenths[0]) == pytest.approx(-54.0, abs=3.0)  # 60 dB x 9/10
        estimates.append(decay_rt60(rir))
        assert estimates[-1] == pytest.approx(rt60, rel=0.15)
    assert estimates == sorted(estimates)


def test_reverberation_keeps_length_and_level_and_smears_in_time():
    click = torch.zeros(SR // 2)
    click[100] = 1.0
    rir = synthetic_rir(0.3, SR, torch.Generator().manual_seed(4))
    wet = reverberate(click, rir)
    assert wet.shape == click.shape
    assert power_db(wet) == pytest.approx(power_db(click), abs=1e-3)
    assert wet[:100].abs().max() < 1e-6  # causal: nothing before the click
    assert float(wet[101:].square().sum()) > 0.3 * float(wet.square().sum())  # a tail, not an echo-free copy


@pytest.mark.parametrize("gain", [-6.0, 0.0, 3.5])
def test_gain_changes_rms_by_the_set_decibels(gain):
    wave = noise()
    assert power_db(apply_gain(wave, gain)) - power_db(wave) == pytest.approx(gain, abs=1e-4)


def test_telephone_band_removes_energy_above_4khz_and_keeps_1khz():
    wave = noise()
    narrow = band_limit(wave, SR, 8000)
    assert narrow.shape == wave.shape
    assert band_energy(wave, 4000) / band_energy(wave, 0) > 0.45  # white noise: half is above 4 kHz
    assert 10 * math.log10(band_energy(narrow, 4000) / band_energy(wave, 4000)) < -30.0
    assert band_energy(narrow, 300, 3400) == pytest.approx(band_energy(wave, 300, 3400), rel=0.02)
    hum = tone(1000.0)
    kept = band_limit(hum, SR, 8000)
    assert power_db(kept[400:-400]) == pytest.approx(power_db(hum[400:-400]), abs=0.05)
    assert peak_hz(kept) == pytest.approx(1000.0, abs=2.0)


def test_the_unwarped_filterbank_is_torchaudios():
    config = FeatureConfig()
    assert torch.allclose(mel_filterbank(config), LogMel(config).mel.mel_scale.fb, atol=1e-4)
    narrow = FeatureConfig(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40, f_min=20.0)
    assert torch.allclose(mel_filterbank(narrow), LogMel(narrow).mel.mel_scale.fb, atol=1e-4)


def test_vtlp_warp_is_linear_below_the_knee_and_keeps_both_ends():
    hz = torch.linspace(0, SR / 2, 801)
    for alpha in (0.9, 1.1):
        warped = vtlp_warp(hz, alpha, SR / 2)
        assert float(warped[0]) == 0.0 and float(warped[-1]) == pytest.approx(SR / 2)
        assert bool((warped.diff() > 0).all())  # monotonic: no two frequencies swap
        low = hz < 0.5 * SR / 2
        assert torch.allclose(warped[low], alpha * hz[low])


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_tone_to_the_band_of_alpha_times_its_frequency(alpha):
    config = FeatureConfig()
    logmel = LogMel(config)
    top = 2595 * math.log10(1 + SR / 2 / 700)
    centres = [700 * (10 ** (top * k / (config.n_mels + 1) / 2595) - 1) for k in range(1, config.n_mels + 1)]
    spacing = centres[30] - centres[29]  # about 45 Hz near 1 kHz
    wave = tone(1000.0)
    plain, warped = logmel.single(wave), logmel.single(wave, warp=alpha)
    assert warped.shape == plain.shape  # duration and frame count stay (speed perturbation changes them)
    assert centres[int(plain.mean(0).argmax())] == pytest.approx(1000.0, abs=spacing / 2)
    assert centres[int(warped.mean(0).argmax())] == pytest.approx(1000.0 * alpha, abs=spacing / 2)


def test_dataset_vtlp_is_drawn_per_utterance_and_epoch_and_keeps_frames(utterances, tokenizer):
    clean = ASRDataset(utterances, tokenizer)
    warped = ASRDataset(utterances, tokenizer, augment=AugmentConfig(p_vtlp=1.0), seed=4)
    assert warped.num_frames == clean.num_frames
    factors = [warped.augment.warp_factor(i, epoch) for i in range(4) for epoch in range(3)]
    assert len(set(factors)) == len(factors) and all(0.9 <= f <= 1.1 for f in factors)
    for key in ((0, 0), (3, 2)):
        index, epoch = key
        features = warped[key]["features"]
        assert features.shape == clean[index]["features"].shape
        assert not torch.allclose(features, clean[index]["features"])
        expected = warped.features.featurize(warped.features.wave(index), factors[index * 3 + epoch])
        assert torch.equal(features, expected)
    never = ASRDataset(utterances, tokenizer, augment=AugmentConfig(p_vtlp=1e-9, p_gain=1.0), seed=4)
    assert {never.augment.warp_factor(i, 0) for i in range(4)} == {1.0}


# ---------------------------------------------------------------------------------------------
# The dataset hook: off means untouched, training only, seeded by (seed, index, epoch)


def test_every_p_zero_is_bit_identical_to_no_augmentation(utterances, tokenizer):
    plain = ASRDataset(utterances, tokenizer, cache_features=True)
    off = replace(EVERY_STEP, **{name: 0.0 for name in AugmentConfig.probabilities()})
    assert not off.active and AugmentConfig().active is False
    configured = ASRDataset(utterances, tokenizer, cache_features=True, augment=off, seed=5)
    assert configured.augment is None and configured.features.cache  # the cache stays on
    assert configured.num_frames == plain.num_frames
    for key in (0, 1, (2, 3), (3, 7)):
        assert torch.equal(configured[key]["features"], plain[key]["features"])


def test_same_seed_index_epoch_is_identical_and_another_epoch_or_seed_differs(utterances, tokenizer):
    dataset = ASRDataset(utterances, tokenizer, augment=EVERY_STEP, seed=1)
    again = ASRDataset(utterances, tokenizer, augment=EVERY_STEP, seed=1)
    first = dataset[(0, 2)]["features"]
    assert torch.equal(first, again[(0, 2)]["features"])  # a fresh process, same draws
    assert torch.equal(first, dataset[(0, 2)]["features"])
    assert not torch.equal(first, dataset[(0, 3)]["features"])
    other_seed = ASRDataset(utterances, tokenizer, augment=EVERY_STEP, seed=2)
    assert not torch.equal(first, other_seed[(0, 2)]["features"])
    clean = ASRDataset(utterances, tokenizer)[0]["features"]
    assert first.shape[0] > clean.shape[0]  # speed 0.9 lengthened it


def test_steps_draw_independently(utterances, tokenizer):
    """Switching the telephone band on does not change the gain drawn for the same utterance and epoch."""
    wave = noise()
    gain_only = WaveAugment(AugmentConfig(p_gain=1.0), SR, seed=3)(wave, 1, 4)
    with_telephone = WaveAugment(AugmentConfig(p_gain=1.0, p_telephone=1.0), SR, seed=3)
    telephone_only = WaveAugment(AugmentConfig(p_telephone=1.0), SR, seed=3)(wave, 1, 4)
    ratio = power_db(with_telephone(wave, 1, 4)) - power_db(telephone_only)
    assert ratio == pytest.approx(power_db(gain_only) - power_db(wave), abs=1e-4)


def test_augmentation_bypasses_the_feature_cache(utterances, tokenizer, tmp_path):
    dataset = ASRDataset(
        utterances, tokenizer, cache_features=True, cache_dir=tmp_path / "cache", augment=EVERY_STEP
    )
    assert not dataset.features.cache and dataset.features.path is None
    dataset.features.build()
    assert not (tmp_path / "cache").exists()
    assert not torch.equal(dataset[(1, 0)]["features"], dataset[(1, 1)]["features"])


def test_tts_targets_are_never_augmented(utterances, tokenizer):
    with pytest.raises(ValueError, match="data.augment: TTSDataset"):
        TTSDataset(utterances, tokenizer, augment=AugmentConfig(p_gain=0.5))
    assert TTSDataset(utterances, tokenizer, augment=AugmentConfig()).augment is None


def fake_trainer(epoch):
    return SimpleNamespace(current_epoch=epoch, global_rank=0, world_size=1, training=True)


def datamodule(utterances, tokenizer, tmp_path, augment, epoch=0):
    manifest = write_manifest(tmp_path / "all.jsonl", utterances)
    config = DataConfig(
        str(manifest), str(manifest), str(manifest), max_frames=120, num_workers=0, augment=augment
    )
    module = ASRDataModule(config, tokenizer)
    module.trainer = fake_trainer(epoch)
    module.setup("fit")
    return module


def features_by_id(loader):
    return {i: f[:n] for b in loader for i, f, n in zip(b.ids, b.features, b.feature_lengths.tolist())}


def test_dev_and_test_never_augment_even_when_configured(utterances, tokenizer, tmp_path):
    module = datamodule(utterances, tokenizer, tmp_path, EVERY_STEP)
    clean = {u.id: ASRDataset(utterances, tokenizer)[i]["features"] for i, u in enumerate(utterances)}
    for loader in (module.val_dataloader(), module.test_dataloader()):
        seen = features_by_id(loader)
        assert seen.keys() == clean.keys()
        assert all(torch.equal(seen[k], clean[k]) for k in clean)
    assert module.datasets["dev"].augment is None and module.datasets["train"].augment is not None
    train = features_by_id(module.train_dataloader())
    assert all(train[k].shape[0] > clean[k].shape[0] for k in clean)  # speed 0.9 on every training item


def test_train_loader_follows_the_epoch_and_a_resumed_run_sees_the_same_audio(
    utterances, tokenizer, tmp_path
):
    config = AugmentConfig(p_noise=1.0, p_gain=1.0)
    module = datamodule(utterances, tokenizer, tmp_path, config, epoch=1)
    loader = module.train_dataloader()
    epoch1 = features_by_id(loader)
    assert all(torch.equal(epoch1[k], v) for k, v in features_by_id(loader).items())
    module.trainer = fake_trainer(2)
    epoch2 = features_by_id(loader)
    assert not any(torch.equal(epoch1[k], epoch2[k]) for k in epoch1)

    module.trainer = fake_trainer(1)
    iterator = iter(loader)
    module.on_before_batch_transfer(next(iterator), 0)
    resumed = datamodule(utterances, tokenizer, tmp_path, config, epoch=1)
    resumed.load_state_dict(module.state_dict())
    rest = features_by_id(resumed.train_dataloader())
    assert 0 < len(rest) < len(epoch1)
    assert all(torch.equal(rest[k], epoch1[k]) for k in rest)


# ---------------------------------------------------------------------------------------------
# Config: validation and overrides


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"p_speed": 1.5}, "p_speed"),
        ({"p_telephone": -0.1}, "p_telephone"),
        ({"speed_factors": ()}, "speed_factors"),
        ({"speed_factors": (0.9, 0.0)}, "speed_factors"),
        ({"rt60": (0.8, 0.2)}, "rt60"),
        ({"rt60": (0.0, 0.5)}, "rt60"),
        ({"noise_snr_db": (5.0,)}, "noise_snr_db"),
        ({"babble_snr_db": (20.0, 10.0)}, "babble_snr_db"),
        ({"gain_db": (6.0, -6.0)}, "gain_db"),
        ({"noise_colors": ("red",)}, "noise_colors"),
        ({"noise_colors": ()}, "noise_colors"),
        ({"babble_speakers": 0}, "babble_speakers"),
        ({"telephone_rate": 0}, "telephone_rate"),
        ({"vtlp_alpha": (1.1, 0.9)}, "vtlp_alpha"),
        ({"vtlp_alpha": (0.1, 1.1)}, "vtlp_alpha"),
        ({"vtlp_alpha": (0.9, 3.0)}, "vtlp_alpha"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field) as error:
        AugmentConfig(**changes)
    assert "\n" not in str(error.value)


def test_telephone_rate_must_be_below_the_feature_rate():
    with pytest.raises(ValueError, match="telephone_rate"):
        DataConfig(features=FeatureConfig(sample_rate=8000), augment=AugmentConfig(p_telephone=0.5))
    DataConfig(features=FeatureConfig(sample_rate=8000), augment=AugmentConfig(telephone_rate=8000))


def test_overrides_reach_the_augment_section_through_load_experiment():
    base = load_experiment("configs/asr/small.yaml")
    assert base.data.augment == AugmentConfig() and not base.data.augment.active
    config = load_experiment(
        "configs/asr/small.yaml",
        [
            "--data.augment.p_speed=0.5",
            "--data.augment.speed_factors=[0.95, 1.05]",
            "--data.augment.noise_snr_db=[0, 10]",
            "--data.augment.noise_colors=[pink]",
            "--data.augment.p_telephone",
            "1",
        ],
    )
    augment = config.data.augment
    assert augment.p_speed == 0.5 and augment.p_telephone == 1.0 and augment.active
    assert augment.speed_factors == (0.95, 1.05) and augment.noise_snr_db == (0.0, 10.0)
    assert augment.noise_colors == ("pink",)
    with pytest.raises(ConfigError, match=r"data\.augment.*p_gain"):
        load_experiment("configs/asr/small.yaml", ["--data.augment.p_gain=2"])
    with pytest.raises(ConfigError, match="data.augment.p_spead: unknown field"):
        load_experiment("configs/asr/small.yaml", ["--data.augment.p_spead=0.5"])
