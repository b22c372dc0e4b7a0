"""``DataConfig``: which manifests to read, how to batch, featurise and augment them (no Lightning)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from seq2seq.core.audio import FeatureConfig
from seq2seq.core.config import check_choice

NoiseColor = Literal["white", "pink", "brown"]
NOISE_COLORS: tuple[NoiseColor, ...] = ("white", "pink", "brown")


def _check_range(
    name: str, value: tuple[float, ...], low: float | None = None, high: float | None = None
) -> None:
    """A ``(low, high)`` pair with ``low <= high``, inside ``[low, high]`` where those bounds are given."""
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"AugmentConfig.{name} must be a [low, high] pair with low <= high, got {value}")
    if low is not None and value[0] < low:
        raise ValueError(f"AugmentConfig.{name} must be >= {low}, got {value}")
    if high is not None and value[1] > high:
        raise ValueError(f"AugmentConfig.{name} must be <= {high}, got {value}")


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly waveform augmentation of the training split (``seq2seq.data.augment``); off by default.

    Each step runs with its own probability ``p_*``, in this order: speed, reverberation, coloured noise,
    babble, telephone band, gain on the waveform, then VTLP in its features. Every draw is seeded by
    ``DataConfig.seed``, the utterance index and the epoch, so a resumed run sees the same audio as an
    uninterrupted one. Any ``p_* > 0`` makes the training split compute its features on the fly (the
    feature cache is bypassed there; dev and test still use it).

    Attributes:
        p_speed: probability of speed perturbation (Kaldi-style resampling: duration and pitch change).
        speed_factors: factors drawn uniformly; 1.1 is 10 % faster (1/1.1 of the frames).
        p_reverb: probability of convolving with a synthetic room impulse response.
        rt60: range of the RIR's reverberation time in seconds (60 dB energy decay).
        reverb_drr_db: range of the direct-to-reverberant energy ratio in dB (higher = drier).
        p_noise: probability of adding generated coloured noise.
        noise_colors: colours drawn uniformly (white, pink 1/f, brown 1/f^2 power).
        noise_snr_db: SNR range of coloured noise in dB.
        p_babble: probability of adding babble: a mix of other training utterances (other speakers).
        babble_speakers: how many other utterances are mixed into the babble.
        babble_snr_db: SNR range of babble in dB.
        p_telephone: probability of band-limiting through ``telephone_rate`` and back.
        telephone_rate: the narrow-band rate in Hz (8000 keeps 0-4 kHz).
        p_gain: probability of a random gain.
        gain_db: gain range in dB (no clipping: features are log-Mel of float audio).
        p_vtlp: probability of vocal tract length perturbation (Jaitly & Hinton, 2013): the Mel filters
            read the spectrum along a warped frequency axis, so formants move and duration does not.
        vtlp_alpha: range of the warp factor, drawn uniformly; 1.1 moves formants 10 % up.
    """

    p_speed: float = 0.0
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    p_reverb: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)
    reverb_drr_db: tuple[float, float] = (0.0, 10.0)
    p_noise: float = 0.0
    noise_colors: tuple[NoiseColor, ...] = NOISE_COLORS
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    p_babble: float = 0.0
    babble_speakers: int = 3
    babble_snr_db: tuple[float, float] = (10.0, 20.0)
    p_telephone: float = 0.0
    telephone_rate: int = 8000
    p_gain: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    p_vtlp: float = 0.0
    vtlp_alpha: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        for name in self.probabilities():
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.speed_factors or any(not 0.0 < f <= 4.0 for f in self.speed_factors):
            raise ValueError(f"AugmentConfig.speed_factors must be in (0, 4], got {self.speed_factors}")
        _check_range("rt60", self.rt60, low=0.01)
        _check_range("reverb_drr_db", self.reverb_drr_db)
        _check_range("noise_snr_db", self.noise_snr_db)
        _check_range("babble_snr_db", self.babble_snr_db)
        _check_range("gain_db", self.gain_db)
        _check_range("vtlp_alpha", self.vtlp_alpha, low=0.5, high=2.0)
        if not self.noise_colors:
            raise ValueError("AugmentConfig.noise_colors must name at least one colour")
        for color in self.noise_colors:
            check_choice("AugmentConfig.noise_colors", color, NOISE_COLORS)
        if self.babble_speakers < 1:
            raise ValueError(f"AugmentConfig.babble_speakers must be >= 1, got {self.babble_speakers}")
        if self.telephone_rate <= 0:
            raise ValueError(f"AugmentConfig.telephone_rate must be > 0, got {self.telephone_rate}")

    @classmethod
    def probabilities(cls) -> tuple[str, ...]:
        """Names of the ``p_*`` fields."""
        return tuple(f.name for f in fields(cls) if f.name.startswith("p_"))

    @property
    def active(self) -> bool:
        """Whether any step can run (some ``p_* > 0``)."""
        return any(getattr(self, name) > 0 for name in self.probabilities())


@dataclass(frozen=True)
class DataConfig:
    """Data settings of a training run.

    Attributes:
        train_manifest: JSON Lines manifest of the training set.
        dev_manifest: manifest used for validation.
        test_manifest: manifest used by ``trainer.test`` and evaluation.
        extra_train_manifests: further manifests read into the training set (synthetic speakers mixed into a
            small real corpus: ``seq2seq prepare spoken``); their texts train the tokenizer too.
        max_frames: padded feature frames per batch (batch size x longest utterance); 20000 frames is 200 s
            of audio at 10 ms frames.
        max_batch_size: optional cap on utterances per batch.
        max_duration: utterances longer than this many seconds are left out of training (None keeps all).
        num_workers: DataLoader worker processes.
        cache_features: keep log-Mel features after computing them once.
        cache_dir: folder for the on-disk feature cache; None keeps the cache in memory.
        seed: seed of batch composition and order, and of waveform augmentation.
        features: log-Mel settings (sample rate, bands, hop).
        augment: waveform augmentation of the training split (off by default).
    """

    train_manifest: str = "data/synthetic/train.jsonl"
    dev_manifest: str = "data/synthetic/dev.jsonl"
    test_manifest: str | None = "data/synthetic/test.jsonl"
    extra_train_manifests: tuple[str, ...] = ()
    max_frames: int = 20000
    max_batch_size: int | None = None
    max_duration: float | None = None
    num_workers: int = 2
    cache_features: bool = True
    cache_dir: str | None = None
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

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
        if not all(self.extra_train_manifests):
            raise ValueError("DataConfig.extra_train_manifests: every entry must name a manifest file")
        if self.augment.p_telephone > 0 and self.augment.telephone_rate >= self.features.sample_rate:
            raise ValueError(
                f"DataConfig.augment.telephone_rate must be below features.sample_rate "
                f"({self.features.sample_rate}), got {self.augment.telephone_rate}"
            )

    @property
    def train_manifests(self) -> tuple[str, ...]:
        """Every manifest of the training set: ``train_manifest`` first, then the extra ones."""
        return (self.train_manifest, *self.extra_train_manifests)


@dataclass(frozen=True)
class LMDataConfig:
    """Data settings of a language-model run: text in, no audio.

    Each ``*_manifest`` is a plain text file (one sentence a line) or a JSON Lines manifest (its
    ``text`` fields; by the ``.jsonl`` / ``.json`` suffix), so an ASR corpus's manifests serve as they are.

    Attributes:
        train_manifest: training text.
        dev_manifest: validation text.
        test_manifest: test text (optional).
        max_tokens: padded tokens per batch (batch size x longest sentence, SOS included).
        max_batch_size: optional cap on sentences per batch.
        max_length: sentences of more tokens than this are left out of training (None keeps all).
        num_workers: DataLoader worker processes.
        seed: seed of batch composition and order.
    """

    train_manifest: str = "data/lm/train.txt"
    dev_manifest: str = "data/lm/dev.txt"
    test_manifest: str | None = None
    max_tokens: int = 8000
    max_batch_size: int | None = None
    max_length: int | None = 400
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"LMDataConfig.max_tokens must be > 0, got {self.max_tokens}")
        for name in ("max_batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"LMDataConfig.{name} must be >= 1 or null, got {value}")
        if self.num_workers < 0:
            raise ValueError(f"LMDataConfig.num_workers must be >= 0, got {self.num_workers}")
        if not self.train_manifest:
            raise ValueError("LMDataConfig.train_manifest must name a text file or manifest")


@dataclass(frozen=True)
class TextDataConfig:
    """Data settings of a text-to-text run (manifests of ``{"id", "text", "target", "references"}``).

    Attributes:
        train_manifest: JSON Lines manifest of the training pairs.
        dev_manifest: manifest used for validation.
        test_manifest: manifest used for evaluation.
        max_tokens: padded tokens per batch (batch size x longest of source and target + 1), the
            length-bucketing budget.
        max_batch_size: optional cap on pairs per batch.
        train_on_references: train on every reference of a training entry (all pronunciations of a word),
            not only its ``target``; dev and test always use ``target``.
        num_workers: DataLoader worker processes (0: tokenised in the main process, which is cheapest).
        seed: seed of batch composition and order.
    """

    train_manifest: str = "data/cmudict/train.jsonl"
    dev_manifest: str = "data/cmudict/dev.jsonl"
    test_manifest: str | None = "data/cmudict/test.jsonl"
    max_tokens: int = 2000
    max_batch_size: int | None = None
    train_on_references: bool = True
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"TextDataConfig.max_tokens must be > 0, got {self.max_tokens}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"TextDataConfig.max_batch_size must be >= 1 or null, got {self.max_batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"TextDataConfig.num_workers must be >= 0, got {self.num_workers}")
        if not self.train_manifest:
            raise ValueError("TextDataConfig.train_manifest must name a manifest file")

    @property
    def max_frames(self) -> int:
        """The bucketing budget under the name the shared data module reads (tokens here, not frames)."""
        return self.max_tokens
