"""The experiment configs a recipe YAML fills: one frozen dataclass per task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seq2seq.audio import SpecAugmentConfig
from seq2seq.config import OptimConfig, TokenizerConfig, TrainerConfig
from seq2seq.data.config import DataConfig
from seq2seq.decoding.config import DecodingConfig
from seq2seq.models.asr import ASRModelConfig
from seq2seq.text import TextNormalizerConfig


@dataclass(frozen=True)
class ASRExperimentConfig:
    """Everything one ASR training run needs; saved in its checkpoints and model package.

    Attributes:
        task: always ``asr``; selects this class when a YAML is read.
        out_dir: where checkpoints, logs, tokenizer and feature statistics go.
        seed: seeds model initialisation, SpecAugment and batch order.
        data: manifests, features and batching.
        tokenizer: which tokenizer to train on the training texts.
        text: text normalization applied before tokenizing (saved with the model).
        spec_augment: masking applied to training features.
        model: the network's shape (``vocab_size`` is filled from the tokenizer).
        ctc_weight: lambda in ``lambda * CTC + (1 - lambda) * attention``.
        label_smoothing: smoothing of the attention decoder's targets.
        optim: optimizer and schedule.
        trainer: steps, hardware, precision, checkpoints.
        decoding: how validation and evaluation decode.
    """

    task: Literal["asr"] = "asr"
    out_dir: str = "runs/asr"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    text: TextNormalizerConfig = field(default_factory=TextNormalizerConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    model: ASRModelConfig = field(default_factory=ASRModelConfig)
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight={self.ctc_weight} must be in [0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.model.input_dim != self.data.features.n_mels:
            raise ValueError(
                f"model.input_dim={self.model.input_dim} must equal "
                f"data.features.n_mels={self.data.features.n_mels}"
            )


# ---------------------------------------------------------------------------------------------
# TTS (appended by the TTS side)

from seq2seq.models.tts import TTSModelConfig  # noqa: E402


@dataclass(frozen=True)
class TTSLossConfig:
    """Weights of the Transformer TTS loss terms (Li et al. 2019; Tachibana et al. 2017).

    Lightning-free on purpose: it travels in model packages, which inference reads without Lightning.

    Attributes:
        l1_weight: weight of the L1 mel loss (before and after the postnet).
        l2_weight: weight of the L2 mel loss (before and after the postnet).
        stop_weight: weight of the stop-token binary cross-entropy.
        stop_pos_weight: weight of the rare positive ("stop here") frames in that BCE.
        guided_attention_weight: weight of the guided attention loss (0 turns it off).
        guided_attention_sigma: width g of the diagonal band, in fractions of the lengths.
    """

    l1_weight: float = 1.0
    l2_weight: float = 1.0
    stop_weight: float = 1.0
    stop_pos_weight: float = 5.0
    guided_attention_weight: float = 10.0
    guided_attention_sigma: float = 0.4

    def __post_init__(self) -> None:
        for name in ("l1_weight", "l2_weight", "stop_weight", "guided_attention_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name}={getattr(self, name)} must be >= 0")
        if self.stop_pos_weight <= 0 or self.guided_attention_sigma <= 0:
            raise ValueError("loss.stop_pos_weight and loss.guided_attention_sigma must be > 0")


@dataclass(frozen=True)
class TTSInferenceConfig:
    """Synthesis settings saved with the model (``TTSModel.infer`` arguments).

    Attributes:
        max_length_ratio: at most this many frames per input token.
        min_length_ratio: stop tokens are ignored before this many frames per input token.
        stop_threshold: stop probability that ends a sentence.
        griffin_lim_iterations: iterations of the Griffin-Lim vocoder.
    """

    max_length_ratio: float = 10.0
    min_length_ratio: float = 0.0
    stop_threshold: float = 0.5
    griffin_lim_iterations: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.min_length_ratio < self.max_length_ratio:
            raise ValueError(
                f"inference.min_length_ratio={self.min_length_ratio} must be in "
                f"[0, max_length_ratio={self.max_length_ratio})"
            )
        if not 0 < self.stop_threshold < 1 or self.griffin_lim_iterations < 1:
            raise ValueError("inference.stop_threshold must be in (0, 1), griffin_lim_iterations >= 1")


@dataclass(frozen=True)
class TTSExperimentConfig:
    """Everything one TTS training run needs; saved in its checkpoints and model package.

    Attributes:
        task: always ``tts``; selects this class when a YAML is read.
        out_dir: where checkpoints, logs, tokenizer and feature statistics go.
        seed: seeds model initialisation, dropout and batch order.
        data: manifests (single speaker), features (the mel targets) and batching.
        tokenizer: which tokenizer to train on the training texts (characters by default).
        text: text normalization applied before tokenizing (saved with the model).
        model: the network's shape (``vocab_size`` is filled from the tokenizer).
        loss: weights of the loss terms.
        optim: optimizer and schedule.
        trainer: steps, hardware, precision, checkpoints.
        inference: synthesis settings used by validation and ``seq2seq synthesize``.
    """

    task: Literal["tts"] = "tts"
    out_dir: str = "runs/tts"
    seed: int = 0
    data: DataConfig = field(
        default_factory=lambda: DataConfig(
            train_manifest="data/synthetic/tts_train.jsonl",
            dev_manifest="data/synthetic/tts_dev.jsonl",
            test_manifest="data/synthetic/tts_test.jsonl",
        )
    )
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    text: TextNormalizerConfig = field(default_factory=TextNormalizerConfig)
    model: TTSModelConfig = field(default_factory=TTSModelConfig)
    loss: TTSLossConfig = field(default_factory=TTSLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    inference: TTSInferenceConfig = field(default_factory=TTSInferenceConfig)

    def __post_init__(self) -> None:
        if self.model.n_mels != self.data.features.n_mels:
            raise ValueError(
                f"model.n_mels={self.model.n_mels} must equal "
                f"data.features.n_mels={self.data.features.n_mels}"
            )
