"""Audio reading (every failure is one line), log-Mel lengths and padding invariance, CMVN, SpecAugment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from seq2seq.core.audio import (
    AudioError,
    FeatureConfig,
    GlobalCMVN,
    LogMel,
    SpecAugment,
    SpecAugmentConfig,
    mel_to_audio,
    num_frames,
    read_audio,
)
from seq2seq.nn.masking import lengths_to_mask


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * math.pi * freq * t).astype(np.float32)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave


def test_reads_wav_flac_ogg_as_mono_float32(tmp_path):
    for suffix in ("wav", "flac", "ogg"):
        path = tmp_path / f"a.{suffix}"
        soundfile.write(path, tone(0.5, 16000), 16000)
        wave = read_audio(path)
        assert wave.dtype == torch.float32 and wave.ndim == 1
        assert abs(wave.shape[0] - 8000) <= 1 if suffix != "ogg" else abs(wave.shape[0] - 8000) < 400
        assert 0.4 < wave.abs().max() < 0.6


def test_stereo_is_averaged(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = tone(0.25, 16000, channels=2)  # channel 1 at half the amplitude of channel 2
    soundfile.write(path, stereo, 16000, subtype="FLOAT")
    wave = read_audio(path)
    assert wave.shape == (4000,)
    np.testing.assert_allclose(wave.numpy(), stereo.mean(axis=1), atol=1e-6)


def test_other_rate_is_resampled(tmp_path):
    path = tmp_path / "44k.wav"
    soundfile.write(path, tone(1.0, 44100, freq=1000.0), 44100)
    wave = read_audio(path, sample_rate=16000)
    assert wave.shape == (16000,)
    spectrum = torch.fft.rfft(wave).abs()
    assert int(spectrum.argmax()) == 1000  # 1 Hz bins over one second: the tone stays at 1 kHz


def test_offset_and_duration_read_only_the_span(tmp_path):
    path = tmp_path / "ramp.wav"
    ramp = (np.arange(16000) / 16000).astype(np.float32)
    soundfile.write(path, ramp, 16000, subtype="FLOAT")
    wave = read_audio(path, offset=0.25, duration=0.5)
    assert wave.shape == (8000,)
    assert wave[0].item() == pytest.approx(0.25, abs=1e-6)
    with pytest.raises(AudioError, match="outside the file"):
        read_audio(path, offset=2.0)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.flac", b"", "file is empty"),
        ("text.wav", b"this is not audio, just text" * 10, "not an audio file (format not recognised)"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert str(info.value) == f"{path}: {reason}"
    assert "\n" not in str(info.value)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(AudioError, match=r"missing\.wav: no such file$"):
        read_audio(tmp_path / "missing.wav")
    good = tmp_path / "good.flac"
    soundfile.write(good, tone(1.0, 16000), 16000)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(good.read_bytes()[:60])  # header cut off mid-way
    with pytest.raises(AudioError) as info:
        read_audio(corrupt)
    assert str(info.value).startswith(f"{corrupt}: ") and "\n" not in str(info.value)


def test_nan_samples_are_rejected(tmp_path):
    path = tmp_path / "nan.wav"
    data = tone(0.1, 16000)
    data[10] = np.nan
    soundfile.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="contains NaN or infinite samples"):
        read_audio(path)


def test_feature_config_validation_names_the_field():
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(win_length=800)
    with pytest.raises(ValueError, match="hop_length"):
        FeatureConfig(hop_length=0)
    with pytest.raises(ValueError, match="f_max"):
        FeatureConfig(f_max=9000.0)


def test_logmel_shapes_lengths_and_padding_invariance():
    torch.manual_seed(0)
    logmel = LogMel(FeatureConfig())
    lengths = torch.tensor([16000, 8000, 161])
    wave = torch.randn(3, 16000) * lengths_to_mask(lengths, 16000)
    feats, frame_lengths = logmel(wave, lengths)
    assert feats.shape == (3, 101, 80)
    assert frame_lengths.tolist() == [101, 51, 2] == [num_frames(n, 160) for n in lengths.tolist()]
    assert logmel.num_frames(16000) == 101
    # Each utterance's features equal those computed alone; padding frames are exactly zero.
    alone = logmel.single(wave[1, :8000])
    torch.testing.assert_close(feats[1, :51], alone)
    assert feats[1, 51:].abs().sum() == 0
    silent = logmel.single(torch.zeros(1600))
    assert torch.allclose(silent, torch.full_like(silent, math.log(1e-6)))


def test_mel_to_audio_roundtrip_keeps_the_spectrum():
    cfg = FeatureConfig()
    logmel = LogMel(cfg)
    wave = torch.from_numpy(tone(0.5, 16000, freq=500.0))
    feats = logmel.single(wave)
    audio = mel_to_audio(feats, cfg, n_iter=16)
    assert audio.shape == ((feats.shape[0] - 1) * cfg.hop_length,)
    again = logmel.single(audio)
    band = feats[5:-5].mean(0).argmax()
    assert again[5:-5].mean(0).argmax() == band  # the tone lands in the same Mel band


def test_global_cmvn_statistics_and_masking():
    torch.manual_seed(0)
    feats = [torch.randn(50, 4) * 3 + 7, torch.randn(30, 4) * 3 + 7]
    cmvn = GlobalCMVN.from_features(feats)
    all_frames = torch.cat(feats).double()
    torch.testing.assert_close(cmvn.mean, all_frames.mean(0).float())
    torch.testing.assert_close(cmvn.std, all_frames.std(0, unbiased=False).float())
    batch = torch.zeros(2, 50, 4)
    batch[0], batch[1, :30] = feats[0], feats[1]
    mask = lengths_to_mask(torch.tensor([50, 30]))
    out = cmvn(batch, mask)
    assert out[1, 30:].abs().sum() == 0
    valid = out[mask]
    assert valid.mean().abs() < 1e-5 and (valid.std(unbiased=False) - 1).abs() < 1e-4
    assert set(cmvn.state_dict()) == {"mean", "std"}


def test_specaugment_respects_each_length_and_eval_is_identity():
    torch.manual_seed(0)
    aug = SpecAugment(SpecAugmentConfig(freq_masks=0, time_masks=4, time_width_ratio=0.2))
    x = torch.ones(2, 200, 8)
    lengths = torch.tensor([200, 50])
    out = aug.train()(x, lengths)
    masked_frames = (out == 0).all(-1)
    assert masked_frames[1, 50:].sum() == 0  # no time mask inside the padding
    assert 0 < masked_frames[0].sum() <= 4 * 40 and masked_frames[1].sum() <= 4 * 10
    assert torch.equal(aug.eval()(x, lengths), x)


def test_specaugment_frequency_masks_and_time_warp():
    torch.manual_seed(1)
    aug = SpecAugment(SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=0, time_warp=5)).train()
    x = torch.arange(100, dtype=torch.float32).repeat(3, 80, 1).transpose(1, 2) + 1  # (3, 100, 80)
    out = aug(x, torch.tensor([100, 100, 60]))
    masked_bands = (out == 0).all(1).sum(-1)
    assert (masked_bands <= 20).all() and masked_bands.sum() > 0
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="time_width_ratio"):
        SpecAugmentConfig(time_width_ratio=1.5)
