"""On-the-fly augmentation of training audio: speed, reverberation, noise, babble, telephone, gain, VTLP.

Everything is made by the toolkit itself, so no noise or RIR corpus has to be downloaded:

- *speed*: Kaldi's speed perturbation, the waveform resampled as if it had been recorded at
  ``factor x sample_rate``; duration and pitch both change, so the feature frames follow (1.1 gives
  1/1.1 of them).
- *reverberation*: a synthetic room impulse response, Gaussian noise under an exponential envelope that
  loses 60 dB of energy in RT60 seconds, behind a unit direct path at a drawn direct-to-reverberant ratio;
  convolved with ``torchaudio.functional.fftconvolve`` and scaled back to the input's RMS.
- *noise*: generated white, pink (1/f power) or brown (1/f^2) noise at a drawn SNR.
- *babble*: a few other training utterances (other speakers when the manifest names speakers; with the
  synthetic corpus, other eSpeak NG voices), each at unit RMS, summed and added at a drawn SNR.
- *telephone*: resampled to ``telephone_rate`` and back, which removes everything above its Nyquist.
- *gain*: a drawn gain in dB.
- *VTLP*: vocal tract length perturbation, the one step in the features rather than the waveform: the
  Mel filterbank reads the spectrum along a frequency axis warped by a drawn factor (``vtlp_warp``), so
  a speaker's formants move as if their vocal tract were shorter or longer, while duration and frame
  count stay (speed perturbation moves both together).

Each step draws from its own generator seeded by ``(seed, epoch, utterance index, step)``, so the audio
does not depend on worker processes or batch order, a resumed run sees exactly what an uninterrupted one
would, and switching one step on does not change the draws of another.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence

import torch
import torchaudio

from seq2seq.core.audio import AudioError
from seq2seq.data.config import AugmentConfig, NoiseColor

logger = logging.getLogger(__name__)

# Power falls as 1/f^k: the amplitude spectrum is shaped by f^(-k/2).
_COLOR_EXPONENT = {"white": 0.0, "pink": 0.5, "brown": 1.0}
_BABBLE_TRIES = 20  # draws per babble source before a same-speaker utterance is accepted
# A sharper anti-aliasing filter than resample's default (whose stopband lets ~-20 dB through near the
# edge): a Kaiser window over 16 zero crossings, cut at 94.5 % of the narrow Nyquist (3.78 kHz at 8 kHz).
_TELEPHONE_FILTER = {
    "lowpass_filter_width": 16,
    "rolloff": 0.945,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.77,
}


def step_generator(seed: int, epoch: int, index: int, step: str) -> torch.Generator:
    """A CPU generator for one step of one utterance in one epoch (stable across processes and runs)."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}/{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _pick(generator: torch.Generator, count: int) -> int:
    return int(torch.randint(count, (), generator=generator))


def _rms(wave: torch.Tensor) -> torch.Tensor:
    return wave.square().mean().sqrt()


def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """Play ``wave`` ``factor`` times as fast (pitch up with it): (N,) -> (~N / factor,)."""
    if factor == 1.0:
        return wave
    return torchaudio.functional.resample(wave, round(sample_rate * factor), sample_rate)


def synthetic_rir(
    rt60: float, sample_rate: int, generator: torch.Generator, drr_db: float = 0.0
) -> torch.Tensor:
    """A room impulse response: a unit direct path, then exponentially decaying Gaussian noise.

    Args:
        rt60: reverberation time in seconds: the tail's energy falls 60 dB in this time.
        sample_rate: rate in Hz.
        generator: source of the tail's noise.
        drr_db: direct-to-reverberant energy ratio in dB (the tail's energy is ``10^(-drr/10)``).

    Returns:
        (round(rt60 * sample_rate),) float32 response starting with the direct path at sample 0.
    """
    length = max(2, round(rt60 * sample_rate))
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    # 60 dB of energy in rt60 seconds: amplitude exp(-a t) with 20 log10(e) a rt60 = 60.
    envelope = torch.exp(-3.0 * math.log(10.0) * t / rt60)
    tail = torch.randn(length, generator=generator) * envelope
    tail[0] = 0.0
    tail = tail * (10.0 ** (-drr_db / 20.0) / tail.square().sum().sqrt().clamp(min=1e-12))
    tail[0] = 1.0
    return tail


def reverberate(wave: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve with ``rir`` (direct path at 0), keep the input's length and RMS: (N,) -> (N,)."""
    wet = torchaudio.functional.fftconvolve(wave, rir.to(wave.dtype))[: wave.shape[0]]
    return wet * (_rms(wave) / _rms(wet).clamp(min=1e-12))


def colored_noise(color: NoiseColor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS noise whose power spectrum falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown): (N,)."""
    white = torch.randn(num_samples, generator=generator)
    exponent = _COLOR_EXPONENT[color]
    if exponent == 0.0 or num_samples < 2:
        return white / _rms(white).clamp(min=1e-12)
    spectrum = torch.fft.rfft(white)
    frequency = torch.arange(spectrum.shape[0], dtype=torch.float32)
    spectrum = spectrum * frequency.clamp(min=1.0).pow(-exponent)
    spectrum[0] = 0.0  # no DC offset
    noise = torch.fft.irfft(spectrum, n=num_samples)
    return noise / _rms(noise).clamp(min=1e-12)


def add_at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave`` plus ``noise`` scaled so that the mixture's SNR is ``snr_db``; silence stays silent: (N,)."""
    signal_power, noise_power = wave.square().mean(), noise.square().mean()
    if signal_power == 0 or noise_power == 0:
        return wave
    scale = torch.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return wave + scale * noise


def fit_length(wave: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """``wave`` cut at a random offset, or repeated, to exactly ``length`` samples."""
    if wave.shape[0] < length:
        wave = wave.repeat(math.ceil(length / wave.shape[0]))
    start = _pick(generator, wave.shape[0] - length + 1)
    return wave[start : start + length]


def band_limit(wave: torch.Tensor, sample_rate: int, narrow_rate: int) -> torch.Tensor:
    """Down to ``narrow_rate`` and back (keeps 0 to ``narrow_rate / 2`` Hz), same length: (N,) -> (N,)."""
    narrow = torchaudio.functional.resample(wave, sample_rate, narrow_rate, **_TELEPHONE_FILTER)
    back = torchaudio.functional.resample(narrow, narrow_rate, sample_rate, **_TELEPHONE_FILTER)
    if back.shape[0] < wave.shape[0]:
        back = torch.nn.functional.pad(back, (0, wave.shape[0] - back.shape[0]))
    return back[: wave.shape[0]]


def apply_gain(wave: torch.Tensor, gain_db: float) -> torch.Tensor:
    """``wave`` scaled by ``gain_db`` decibels (RMS changes by exactly that)."""
    return wave * 10.0 ** (gain_db / 20.0)


class WaveAugment:
    """The training split's augmentation: ``augment(wave, index, epoch) -> wave``.

    Args:
        config: which steps run and their ranges.
        sample_rate: rate of the waveforms, in Hz.
        seed: seeds every draw (with the utterance index, the epoch and the step's name).
        read: waveform of another training utterance by index, for babble (None disables babble).
        speakers: speaker label of every training utterance (None entries: unknown); babble prefers others.
    """

    def __init__(
        self,
        config: AugmentConfig,
        sample_rate: int,
        seed: int = 0,
        read: Callable[[int], torch.Tensor] | None = None,
        speakers: Sequence[str | None] = (),
    ) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.seed = seed
        self.read = read
        self.speakers = list(speakers)
        self._steps: tuple[tuple[str, float, Callable], ...] = (
            ("speed", config.p_speed, self._speed),
            ("reverb", config.p_reverb, self._reverb),
            ("noise", config.p_noise, self._noise),
            ("babble", config.p_babble, self._babble),
            ("telephone", config.p_telephone, self._telephone),
            ("gain", config.p_gain, self._gain),
        )

    @property
    def max_stretch(self) -> float:
        """Longest output / input duration ratio (1 / the slowest speed factor when speed is on)."""
        return 1.0 / min(self.config.speed_factors) if self.config.p_speed > 0 else 1.0

    def __call__(self, wave: torch.Tensor, index: int, epoch: int) -> torch.Tensor:
        """Augmented copy of utterance ``index``'s waveform (N,) in ``epoch``: (N',), N' = N unless speed."""
        for name, probability, step in self._steps:
            generator = self._drawn(name, probability, index, epoch)
            if generator is not None:
                wave = step(wave, generator, index)
        return wave

    def warp_factor(self, index: int, epoch: int) -> float:
        """The VTLP factor for utterance ``index`` in ``epoch`` (1.0 when the step is off or not drawn)."""
        generator = self._drawn("vtlp", self.config.p_vtlp, index, epoch)
        return 1.0 if generator is None else _uniform(generator, *self.config.vtlp_alpha)

    def _drawn(self, name: str, probability: float, index: int, epoch: int) -> torch.Generator | None:
        """The step's generator when the step runs for this utterance and epoch, None when it does not."""
        if probability <= 0:
            return None
        generator = step_generator(self.seed, epoch, index, name)
        return generator if float(torch.rand((), generator=generator)) < probability else None

    def _speed(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        factors = self.config.speed_factors
        return speed_perturb(wave, factors[_pick(generator, len(factors))], self.sample_rate)

    def _reverb(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        rt60 = _uniform(generator, *self.config.rt60)
        drr = _uniform(generator, *self.config.reverb_drr_db)
        return reverberate(wave, synthetic_rir(rt60, self.sample_rate, generator, drr))

    def _noise(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        colors = self.config.noise_colors
        color = colors[_pick(generator, len(colors))]
        snr = _uniform(generator, *self.config.noise_snr_db)
        return add_at_snr(wave, colored_noise(color, wave.shape[0], generator), snr)

    def _babble(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        snr = _uniform(generator, *self.config.babble_snr_db)
        talkers = []
        for other in self._babble_sources(index, generator):
            try:
                talker = self.read(other)  # type: ignore[misc]  (sources are empty without ``read``)
            except AudioError as error:  # a broken *other* file must not cost this utterance
                logger.warning("%s (not used for babble)", error)
                continue
            if _rms(talker) > 0:
                talker = fit_length(talker, wave.shape[0], generator)
                talkers.append(talker / _rms(talker).clamp(min=1e-12))
        return add_at_snr(wave, torch.stack(talkers).sum(0), snr) if talkers else wave

    def _babble_sources(self, index: int, generator: torch.Generator) -> list[int]:
        """Up to ``babble_speakers`` distinct other utterances, of other speakers where possible."""
        count = len(self.speakers)
        if self.read is None or count < 2:
            return []
        own = self.speakers[index] if index < count else None
        chosen: list[int] = []
        for _ in range(min(self.config.babble_speakers, count - 1)):
            for attempt in range(_BABBLE_TRIES):
                other = _pick(generator, count)
                if other == index or other in chosen:
                    continue
                if own is None or self.speakers[other] != own or attempt == _BABBLE_TRIES - 1:
                    chosen.append(other)
                    break
        return chosen

    def _telephone(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        return band_limit(wave, self.sample_rate, self.config.telephone_rate)

    def _gain(self, wave: torch.Tensor, generator: torch.Generator, index: int) -> torch.Tensor:
        return apply_gain(wave, _uniform(generator, *self.config.gain_db))
