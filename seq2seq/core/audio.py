"""Audio in, features out: reading and resampling, log-Mel features, global CMVN, SpecAugment, Griffin-Lim.

Every module here follows the lengths convention: ``forward(x, lengths) -> (y, lengths)`` with ``(B, T, F)``
features and masks that are True on valid frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from torch import nn

# Largest sample magnitude accepted: far above any real recording (integer formats read as [-1, 1]),
# far below where a power spectrum overflows float32.
MAX_SAMPLE = 1e6


class AudioError(ValueError):
    """An audio file that cannot be used; the message is one line: ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _describe_soundfile_error(error: Exception) -> str:
    """Turn a libsndfile error into a short reason (its messages can span lines and name the C call)."""
    message = " ".join(str(error).split())
    # libsndfile's MP3 reader reports undecodable data as "not a regular file (possibly a pipe?)".
    if any(s in message.lower() for s in ("format not recognised", "not a regular file")):
        return "not an audio file (format not recognised)"
    detail = message.split(": ", 1)[-1] if ": " in message else message
    return f"cannot decode audio ({detail.lower()})"


# libsndfile logs a WAV/AIFF data chunk longer than the file as "data : 32000 (should be 15978)".
_SHORT_DATA_CHUNK = re.compile(r"^(?:data|SSND) : (\d+) \(should be (\d+)\)", re.MULTILINE)
# Writers that stream to a pipe cannot go back to fill in the size and leave a placeholder instead.
_STREAMING_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)


def _check_truncated(path: Path, info: soundfile._SoundFileInfo) -> None:
    """Raise when the header promises more audio than the file holds (a copy or download cut short).

    libsndfile itself quietly shortens such files to what is there, so their transcripts would not match.
    """
    match = _SHORT_DATA_CHUNK.search(info.extra_info or "")
    if match:
        declared, present = int(match.group(1)), int(match.group(2))
        if declared not in _STREAMING_SIZES and present < declared:
            raise AudioError(
                path, f"truncated file (header promises {declared} bytes of audio, {present} present)"
            )


def audio_info(path: str | Path) -> soundfile._SoundFileInfo:
    """Header of an audio file (rate, frames, channels) without decoding it.

    Raises:
        AudioError: the file is missing, empty, not audio, or shorter than its header says.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise AudioError(path, "no such file")
        # libsndfile opens the file itself and reports a refused open as "system error".
        if not os.access(path, os.R_OK):
            raise AudioError(path, "permission denied")
        if path.stat().st_size == 0:
            raise AudioError(path, "file is empty")
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, _describe_soundfile_error(error)) from None
    except PermissionError:  # a folder on the way that cannot be entered
        raise AudioError(path, "permission denied") from None
    _check_truncated(path, info)
    return info


def read_audio(
    path: str | Path, sample_rate: int = 16000, offset: float = 0.0, duration: float | None = None
) -> torch.Tensor:
    """Read a span of an audio file as mono float32 at ``sample_rate``.

    Only the requested span is decoded, so segments of long recordings are cheap.

    Args:
        path: wav, flac, ogg or mp3 file (anything libsndfile reads).
        sample_rate: output rate in Hz; other rates are resampled.
        offset: start of the span in seconds.
        duration: length of the span in seconds; None reads to the end.

    Returns:
        (T,) float32 waveform; channels are averaged.

    Raises:
        AudioError: missing, empty, non-audio or undecodable file; span outside the file; NaN/inf.
    """
    info = audio_info(path)
    start = round(offset * info.samplerate)
    if offset < 0 or (info.frames > 0 and start >= info.frames):
        raise AudioError(path, f"offset {offset:.3f} s is outside the file ({info.duration:.3f} s long)")
    frames = -1 if duration is None else max(1, round(duration * info.samplerate))
    try:
        data, file_rate = soundfile.read(
            str(path), start=start, frames=frames, dtype="float32", always_2d=True
        )
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, _describe_soundfile_error(error)) from None
    if data.shape[0] == 0:
        raise AudioError(path, "contains no audio samples")
    expected = info.frames - start if frames < 0 else min(frames, info.frames - start)
    if data.shape[0] < expected - max(info.samplerate // 100, expected // 100):
        # Compressed streams (mp3) cut short: the header counts frames the decoder never finds.
        raise AudioError(path, f"truncated or corrupt: decoded {data.shape[0]} of {expected} samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.abs(data).max())
    if peak > MAX_SAMPLE:  # float files can hold anything; their squares would overflow the spectrogram
        raise AudioError(path, f"sample values up to {peak:.3g} are not audio (expected about [-1, 1])")
    wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32))
    if file_rate != sample_rate:
        wave = torchaudio.functional.resample(wave, file_rate, sample_rate)
    return wave


@dataclass(frozen=True)
class FeatureConfig:
    """Log-Mel feature settings, saved with every model.

    Attributes:
        sample_rate: audio rate in Hz that features are computed at.
        n_fft: FFT size in samples (400 = 25 ms at 16 kHz).
        win_length: analysis window in samples; at most ``n_fft``.
        hop_length: frame shift in samples (160 = 10 ms at 16 kHz).
        n_mels: number of Mel bands.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz; None means Nyquist.
        log_floor: power floor before the log, so silence gives a finite value.
    """

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FeatureConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ValueError(
                f"FeatureConfig.win_length must be <= n_fft ({self.n_fft}), got {self.win_length}"
            )
        nyquist = self.sample_rate / 2
        top = nyquist if self.f_max is None else self.f_max
        if not 0.0 <= self.f_min < top <= nyquist:
            raise ValueError(
                f"FeatureConfig needs 0 <= f_min < f_max <= {nyquist} Hz, got {self.f_min}, {self.f_max}"
            )
        if self.log_floor <= 0:
            raise ValueError(f"FeatureConfig.log_floor must be > 0, got {self.log_floor}")

    @property
    def frame_rate(self) -> float:
        """Feature frames per second."""
        return self.sample_rate / self.hop_length


# Jaitly & Hinton's VTLP keeps the warp linear up to this fraction of the Nyquist frequency (4.8 of 8 kHz)
# and bends it above, so that the Nyquist frequency maps onto itself and no band reads beyond the spectrum.
VTLP_KNEE = 0.6


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)  # the HTK scale, torchaudio's default


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def vtlp_warp(hz: torch.Tensor, alpha: float, nyquist: float) -> torch.Tensor:
    """Vocal tract length perturbation's frequency map (Jaitly & Hinton, 2013): ``f -> alpha f``, then bent.

    Linear up to ``VTLP_KNEE * nyquist * min(alpha, 1) / alpha``, then a straight line to ``nyquist``, so
    ``alpha > 1`` moves formants up (a shorter vocal tract) and ``alpha < 1`` down.
    """
    knee = VTLP_KNEE * nyquist * min(alpha, 1.0) / alpha
    bent = nyquist - (nyquist - alpha * knee) * (nyquist - hz) / (nyquist - knee)
    return torch.where(hz <= knee, alpha * hz, bent)


def mel_filterbank(config: FeatureConfig, warp: float = 1.0) -> torch.Tensor:
    """Triangular Mel filters over the STFT bins, ``(n_fft // 2 + 1, n_mels)``.

    ``warp = 1`` is torchaudio's own bank (HTK scale, unnormalised); otherwise each bin's energy is
    counted at its warped frequency (``vtlp_warp``), which is how VTLP moves a speaker's formants
    without changing the duration the way speed perturbation does.
    """
    nyquist = config.sample_rate / 2
    top = nyquist if config.f_max is None else config.f_max
    bins = torch.linspace(0, config.sample_rate // 2, config.n_fft // 2 + 1)
    if warp != 1.0:
        bins = vtlp_warp(bins, warp, nyquist)
    edges = _mel_to_hz(
        torch.linspace(
            float(_hz_to_mel(torch.tensor(config.f_min))),
            float(_hz_to_mel(torch.tensor(top))),
            config.n_mels + 2,
        )
    )
    widths = edges[1:] - edges[:-1]
    offsets = edges.unsqueeze(0) - bins.unsqueeze(1)  # (bins, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def num_frames(num_samples: int | torch.Tensor, hop_length: int) -> int | torch.Tensor:
    """Frames a centred STFT makes from ``num_samples`` samples: ``num_samples // hop + 1``."""
    return num_samples // hop_length + 1


class LogMel(nn.Module):
    """Log power Mel spectrogram with exact frame lengths.

    Each utterance is analysed on its own samples only, so features do not depend on how much padding its
    batch had (a batched STFT would let padding leak into the last frames).
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=2.0,
            center=True,
        )

    def num_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames produced for ``num_samples`` samples."""
        return num_frames(num_samples, self.config.hop_length)

    def single(self, wave: torch.Tensor, warp: float = 1.0) -> torch.Tensor:
        """Features of one unpadded waveform: (N,) -> (T, n_mels); ``warp != 1`` applies VTLP (training)."""
        frames = self.num_frames(wave.shape[0])
        shortest = self.config.n_fft // 2 + 1
        if wave.shape[0] < shortest:
            # Reflect padding needs more than n_fft / 2 samples; zero-pad tiny clips, keep their frame count.
            wave = nn.functional.pad(wave, (0, shortest - wave.shape[0]))
        if warp == 1.0:
            power = self.mel(wave.float())[:, :frames]  # (n_mels, T)
        else:
            spectrum = self.mel.spectrogram(wave.float())[:, :frames]  # (bins, T)
            power = mel_filterbank(self.config, warp).transpose(0, 1) @ spectrum
        return power.clamp(min=self.config.log_floor).log().transpose(0, 1)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute features.

        Args:
            wave: (B, N) zero-padded waveforms.
            lengths: (B,) valid samples per waveform.

        Returns:
            feats: (B, T, n_mels) log-Mel features, zero beyond each utterance's frames.
            frame_lengths: (B,) ``lengths // hop + 1``.
        """
        frame_lengths = self.num_frames(lengths.long())
        out = wave.new_zeros(wave.shape[0], int(frame_lengths.max()), self.config.n_mels, dtype=torch.float32)
        for b, n in enumerate(lengths.tolist()):
            out[b, : int(frame_lengths[b])] = self.single(wave[b, :n])
        return out, frame_lengths


def mel_to_audio(
    log_mel: torch.Tensor, config: FeatureConfig = FeatureConfig(), n_iter: int = 32
) -> torch.Tensor:
    """Rough waveform from log-Mel features (Griffin-Lim), for listening to TTS output.

    Args:
        log_mel: (T, n_mels) log power Mel spectrogram as made by ``LogMel``.
        config: the feature settings that produced it.
        n_iter: Griffin-Lim iterations.

    Returns:
        (N,) float32 waveform at ``config.sample_rate``.
    """
    n_stft = config.n_fft // 2 + 1
    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=n_stft,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        f_min=config.f_min,
        f_max=config.f_max,
        # Low Mel bands can be narrower than one FFT bin, leaving the filterbank rank-deficient;
        # the SVD-based solver copes where the default QR one fails.
        driver="gelsd",
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=config.n_fft,
        n_iter=n_iter,
        win_length=config.win_length,
        hop_length=config.hop_length,
        power=2.0,
    )
    power = log_mel.detach().float().cpu().exp().transpose(0, 1)  # (n_mels, T)
    frames = power.shape[1]
    fewest = config.n_fft // (2 * config.hop_length) + 2  # the centred inverse STFT needs > n_fft / 2 samples
    if frames < fewest:  # a sentence that stopped at once: padded with silence, then cut to its length
        power = torch.nn.functional.pad(power, (0, fewest - frames))
        return griffin_lim(inverse(power).clamp(min=0.0))[: frames * config.hop_length]
    return griffin_lim(inverse(power).clamp(min=0.0))


class GlobalCMVN(nn.Module):
    """Per-band mean and variance normalisation with statistics of the training set.

    The statistics are buffers, so they travel in the model's state dict.
    """

    def __init__(self, num_features: int, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features) if mean is None else mean.float().clone())
        self.register_buffer("std", torch.ones(num_features) if std is None else std.float().clone())

    @classmethod
    def from_features(cls, features: Iterable[torch.Tensor], min_std: float = 1e-5) -> GlobalCMVN:
        """Statistics over every frame of every utterance, accumulated in float64.

        Args:
            features: (T, F) feature tensors.
            min_std: lower bound on the standard deviation, so constant bands do not divide by zero.
        """
        total = square = None
        count = 0
        for feats in features:
            feats = feats.detach().to(torch.float64)
            total = feats.sum(0) if total is None else total + feats.sum(0)
            square = feats.square().sum(0) if square is None else square + feats.square().sum(0)
            count += feats.shape[0]
        if total is None or count == 0:
            raise ValueError("GlobalCMVN.from_features needs at least one frame")
        mean = total / count
        var = (square / count - mean.square()).clamp(min=0.0)
        return cls(mean.numel(), mean, var.sqrt().clamp(min=min_std))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalise.

        Args:
            x: (B, T, F) features.
            mask: (B, T) True on valid frames.

        Returns:
            (B, T, F) normalised features; padded frames are 0.
        """
        return ((x - self.mean) / self.std) * mask.unsqueeze(-1)


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment settings (Park et al., 2019).

    Attributes:
        freq_masks: number of frequency masks per utterance.
        freq_width: maximum width of a frequency mask, in bands.
        time_masks: number of time masks per utterance.
        time_width_ratio: maximum width of a time mask as a fraction of the utterance's own length.
        time_warp: maximum warp distance in frames; 0 turns time warping off.
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width_ratio: float = 0.05
    time_warp: int = 0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_warp"):
            if getattr(self, name) < 0:
                raise ValueError(f"SpecAugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.time_width_ratio <= 1.0:
            raise ValueError(
                f"SpecAugmentConfig.time_width_ratio must be in [0, 1], got {self.time_width_ratio}"
            )


def _random_spans(sizes: torch.Tensor, max_widths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) mask with one random span per row, span width in [0, max_width] inside [0, size)."""
    widths = (torch.rand(sizes.shape, device=sizes.device) * (max_widths + 1)).long()
    widths = torch.minimum(widths, sizes)
    starts = (torch.rand(sizes.shape, device=sizes.device) * (sizes - widths + 1)).long()
    positions = torch.arange(width, device=sizes.device).unsqueeze(0)
    return (positions >= starts.unsqueeze(1)) & (positions < (starts + widths).unsqueeze(1))


class SpecAugment(nn.Module):
    """Random time warp, frequency masks and time masks; identity in eval mode.

    Time masks are drawn inside each utterance's own length (and scaled by it), never in its padding.
    Masked values are set to 0, which is the mean after ``GlobalCMVN``.
    """

    def __init__(self, config: SpecAugmentConfig = SpecAugmentConfig()) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: (B, T, F) features (normally after CMVN).
            lengths: (B,) valid frames per utterance.

        Returns:
            (B, T, F) augmented features.
        """
        if not self.training:
            return x
        cfg = self.config
        batch, frames, bands = x.shape
        lengths = lengths.to(x.device).long()
        if cfg.time_warp > 0:
            x = self._time_warp(x, lengths)
        keep = torch.ones(batch, frames, bands, dtype=torch.bool, device=x.device)
        band_count = torch.full((batch,), bands, device=x.device)
        for _ in range(cfg.freq_masks):
            keep &= ~_random_spans(band_count, torch.full_like(band_count, cfg.freq_width), bands).unsqueeze(
                1
            )
        time_widths = (lengths.float() * cfg.time_width_ratio).long()
        for _ in range(cfg.time_masks):
            keep &= ~_random_spans(lengths, time_widths, frames).unsqueeze(2)
        return x * keep

    def _time_warp(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Move a random anchor frame by up to ``time_warp`` frames, stretching the two sides to fit."""
        out = x.clone()
        warp = self.config.time_warp
        for b, length in enumerate(lengths.tolist()):
            if length <= 2 * warp + 1:
                continue  # too short to warp without collapsing a side
            centre = int(torch.randint(warp + 1, length - warp, ()).item())
            target = centre + int(torch.randint(-warp, warp + 1, ()).item())
            utt = x[b, :length].transpose(0, 1).unsqueeze(0)  # (1, F, T)
            left = nn.functional.interpolate(
                utt[..., :centre], size=target, mode="linear", align_corners=False
            )
            right = nn.functional.interpolate(
                utt[..., centre:], size=length - target, mode="linear", align_corners=False
            )
            out[b, :length] = torch.cat([left, right], dim=-1)[0].transpose(0, 1)
        return out
