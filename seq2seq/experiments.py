"""The experiment configs a recipe YAML fills: one frozen dataclass per task, and their shared sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union, get_args, get_type_hints

from seq2seq.core.audio import SpecAugmentConfig
from seq2seq.core.config import ConfigError, from_dict, merge, parse_overrides, read_yaml
from seq2seq.core.text import TextNormalizerConfig, TokenizerKind
from seq2seq.data.config import DataConfig, LMDataConfig, TextDataConfig
from seq2seq.decoding.config import DecodingConfig
from seq2seq.models.asr import ASRModelConfig
from seq2seq.models.lm import LMModelConfig
from seq2seq.models.text2text import Text2TextModelConfig
from seq2seq.models.tts import TTSModelConfig


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warm-up schedule.

    Attributes:
        lr: peak learning rate, reached at the end of warm-up.
        warmup_steps: linear warm-up length (Noam: then decays as 1/sqrt(step)).
        schedule: ``noam`` (warm-up then inverse square root), ``constant`` (warm-up then flat) or
            ``cosine`` (warm-up, then a half cosine down to ``final_lr_ratio`` at ``decay_steps``).
        decay_steps: cosine only: step at which the decay ends (about the run's length in steps).
        decay_minutes: cosine only, instead of ``decay_steps``: the decay ends after this much training
            time, as ``trainer.max_minutes`` counts it (resumes included). For time-boxed runs, whose
            step count the machine decides: the rate anneals by the end of the budget on any machine.
        final_lr_ratio: cosine only: the rate after ``decay_steps``, as a fraction of ``lr``.
        weight_decay: decoupled weight decay.
        betas: Adam moments; 0.98 is the Transformer's usual choice.
    """

    lr: float = 1e-3
    warmup_steps: int = 1000
    schedule: Literal["noam", "constant", "cosine"] = "noam"
    decay_steps: int | None = None
    decay_minutes: float | None = None
    final_lr_ratio: float = 0.0
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.98)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, warmup_steps and weight_decay >= 0")
        if self.decay_minutes is not None:
            if self.schedule != "cosine" or self.decay_steps is not None or self.decay_minutes <= 0:
                raise ValueError("optim.decay_minutes needs schedule=cosine, no decay_steps, and a value > 0")
        elif self.schedule == "cosine" and (
            self.decay_steps is None or self.decay_steps <= self.warmup_steps
        ):
            raise ValueError("schedule=cosine needs decay_steps > warmup_steps (or decay_minutes)")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError("final_lr_ratio must be within [0, 1]")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@dataclass(frozen=True)
class TrainerConfig:
    """What Lightning's Trainer is told; hardware choices are made here, not in code.

    Attributes:
        max_steps: optimizer steps to train for.
        max_minutes: wall-clock budget (None: no limit); training stops cleanly and checkpoints.
        accelerator: ``cpu``, ``gpu`` or ``auto``.
        devices: device count per node (``auto``: all visible).
        num_nodes: machines taking part in DDP.
        strategy: ``auto`` or ``ddp`` (CPU DDP uses gloo).
        precision: ``32-true``, ``bf16-mixed`` or ``16-mixed`` (mixed precision is for GPUs).
        accumulate_grad_batches: batches per optimizer step.
        gradient_clip_val: clip the gradient norm to this (0: off).
        val_every_steps: validate every this many optimizer steps.
        checkpoint_every_steps: write ``last.ckpt`` this often, so a killed run loses little.
        keep_best: best checkpoints (by validation loss) to keep for averaging.
        log_every_steps: logging interval.
        max_bad_batches: consecutive non-finite losses tolerated before the run stops.
    """

    max_steps: int = 20000
    max_minutes: float | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "32", "bf16", "16"] = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float = 5.0
    val_every_steps: int = 1000
    checkpoint_every_steps: int = 500
    keep_best: int = 5
    log_every_steps: int = 20
    max_bad_batches: int = 20

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "num_nodes",
            "accumulate_grad_batches",
            "val_every_steps",
            "checkpoint_every_steps",
            "log_every_steps",
            "max_bad_batches",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"trainer.{name}={getattr(self, name)} must be >= 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"trainer.max_minutes={self.max_minutes} must be > 0")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"trainer.accelerator={self.accelerator!r} is not valid; "
                f"choose one of {', '.join(ACCELERATORS)}"
            )
        if (isinstance(self.devices, int) and (self.devices == 0 or self.devices < -1)) or (
            isinstance(self.devices, str) and not re.fullmatch(r"auto|-1|\d+|(\d+,)+\d*", self.devices)
        ):
            raise ValueError(
                f"trainer.devices={self.devices!r} must be a count >= 1, -1 (all), "
                "'auto' or device ids like '0,1'"
            )


@dataclass(frozen=True)
class AnalysisConfig:
    """Measurements of why normalization helps, taken during training (``seq2seq.training.landscape``).

    Attributes:
        landscape_every: probe the training batch every this many steps (0: off, no callback at all):
            loss band, gradient predictiveness, beta-smoothness, batch-vs-running norm statistics.
        step_scales: the probe's steps along the gradient, in multiples of the current learning rate.
        ics: also measure each layer's internal covariate shift (one more pass per layer).
        ics_update: the step the earlier layers take for ICS: ``sgd`` (the current learning rate times
            the raw gradient, Santurkar et al.'s setting) or ``optimizer`` (the exact AdamW step the run
            would take now: moments, bias correction, weight decay, gradient clipping).
    """

    landscape_every: int = 0
    step_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    ics: bool = True
    ics_update: Literal["sgd", "optimizer"] = "sgd"

    def __post_init__(self) -> None:
        if self.landscape_every < 0:
            raise ValueError(f"analysis.landscape_every={self.landscape_every} must be >= 0 (0: off)")
        if not self.step_scales or any(s <= 0 for s in self.step_scales):
            raise ValueError(f"analysis.step_scales={list(self.step_scales)} must be non-empty and > 0")


@dataclass(frozen=True)
class TokenizerConfig:
    """How the recipe's tokenizer is made (trained on the training manifest when first needed).

    Attributes:
        kind: ``char``, ``phoneme`` (eSpeak NG IPA, for TTS), ``g2p`` (the phonemes of the G2P model
            ``g2p``, for TTS), ``unigram`` or ``bpe`` (sentencepiece).
        vocab_size: sentencepiece vocabulary size (ignored for characters and phonemes).
        language: eSpeak NG voice that phonemises the text (``phoneme`` only).
        source: a model package, or a tokenizer folder (holding ``tokenizer.json``), whose tokenizer the
            run copies instead of training one (``kind``, ``vocab_size`` and ``language`` then do not
            apply): a language model that shares its ASR model's token ids. Empty: train one.
        g2p: a text2text (grapheme-to-phoneme) package that pronounces every word (``g2p`` only); the
            tokenizer keeps a copy of it, so the TTS package can pronounce words it has not met.
        dictionary: text-pair manifests (``prepare cmudict`` writes them) whose words are looked up before
            the G2P model is asked, with their first pronunciation, as dictionary-first front-ends do
            (``g2p`` only; the package keeps them in its lexicon). Empty: the model pronounces every word.
    """

    kind: TokenizerKind = "char"
    vocab_size: int = 256
    language: str = "en-us"
    source: str = ""
    g2p: str = ""
    dictionary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.g2p and self.kind != "g2p":
            raise ValueError(f"tokenizer.g2p names a G2P package for tokenizer.kind=g2p, not {self.kind}")
        if self.dictionary and not self.g2p:
            raise ValueError("tokenizer.dictionary is looked up before a G2P model: set tokenizer.g2p too")
        if self.kind == "g2p" and not (self.g2p or self.source):
            raise ValueError(
                "tokenizer.kind=g2p needs tokenizer.g2p: the G2P package that pronounces the words"
            )


def _check_time_budget(optim: OptimConfig, trainer: TrainerConfig) -> None:
    # Caught here, before data loads, rather than when the optimizer is built.
    if optim.decay_minutes is not None and trainer.max_minutes is None:
        raise ValueError("optim.decay_minutes needs trainer.max_minutes: the budget's clock")


def _check_loss_weights(ctc_weight: float, label_smoothing: float) -> None:
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight={ctc_weight} must be in [0, 1]")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")


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
        analysis: landscape / internal covariate shift probes during training (off by default).
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
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self) -> None:
        _check_loss_weights(self.ctc_weight, self.label_smoothing)
        _check_time_budget(self.optim, self.trainer)
        if self.model.input_dim != self.data.features.n_mels:
            raise ValueError(
                f"model.input_dim={self.model.input_dim} must equal "
                f"data.features.n_mels={self.data.features.n_mels}"
            )


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
        analysis: landscape / internal covariate shift probes during training (off by default).
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
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self) -> None:
        _check_time_budget(self.optim, self.trainer)
        if self.model.n_mels != self.data.features.n_mels:
            raise ValueError(
                f"model.n_mels={self.model.n_mels} must equal "
                f"data.features.n_mels={self.data.features.n_mels}"
            )


@dataclass(frozen=True)
class LMExperimentConfig:
    """Everything one language-model training run needs; saved in its checkpoints and model package.

    Attributes:
        task: always ``lm``; selects this class when a YAML is read.
        out_dir: where checkpoints, logs and the tokenizer go.
        seed: seeds model initialisation, dropout and batch order.
        data: training and validation text (plain text files or manifests) and batching.
        tokenizer: which tokenizer to train, or (``tokenizer.source``) whose to share.
        text: text normalization applied before tokenizing a trained tokenizer (a shared one brings
            its own).
        model: the network's shape (``vocab_size`` is filled from the tokenizer).
        label_smoothing: smoothing of the next-token targets.
        optim: optimizer and schedule.
        trainer: steps, hardware, precision, checkpoints.
        analysis: landscape / internal covariate shift probes during training (off by default).
    """

    task: Literal["lm"] = "lm"
    out_dir: str = "runs/lm"
    seed: int = 0
    data: LMDataConfig = field(default_factory=LMDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    text: TextNormalizerConfig = field(default_factory=TextNormalizerConfig)
    model: LMModelConfig = field(default_factory=LMModelConfig)
    label_smoothing: float = 0.0
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self) -> None:
        _check_loss_weights(0.0, self.label_smoothing)
        _check_time_budget(self.optim, self.trainer)


def _word_normalizer() -> TextNormalizerConfig:
    # Words keep their apostrophes wherever they are ("'bout"); case is folded.
    return TextNormalizerConfig(strip_punctuation=False)


def _symbol_normalizer() -> TextNormalizerConfig:
    # ARPAbet is upper case and its symbols are the vocabulary: only whitespace is normalised.
    return TextNormalizerConfig(lowercase=False, strip_punctuation=False)


def _text2text_decoding() -> DecodingConfig:
    # No CTC by default (a word may have more phonemes than letters, which CTC cannot emit), and up to
    # three output tokens per source token.
    return DecodingConfig(beam_size=5, ctc_weight=0.0, max_length_ratio=3.0)


@dataclass(frozen=True)
class Text2TextExperimentConfig:
    """Everything one text-to-text run (grapheme-to-phoneme) needs; saved in checkpoints and packages.

    Attributes:
        task: always ``text2text``; selects this class when a YAML is read.
        out_dir: where checkpoints, logs and the tokenizers go.
        seed: seeds model initialisation, dropout and batch order.
        data: text-pair manifests and batching.
        source_tokenizer: the source side's tokenizer (characters of a word).
        target_tokenizer: the target side's tokenizer (``symbols``: space-separated phonemes).
        source_text: normalization of source texts (saved with the model).
        target_text: normalization of target texts.
        model: the network's shape (both vocabulary sizes are filled from the tokenizers).
        ctc_weight: lambda in ``lambda * CTC + (1 - lambda) * attention`` (0: no CTC loss).
        label_smoothing: smoothing of the attention decoder's targets.
        optim: optimizer and schedule.
        trainer: steps, hardware, precision, checkpoints.
        decoding: how ``generate`` and ``evaluate`` search.
        analysis: landscape / internal covariate shift probes during training (off by default).
    """

    task: Literal["text2text"] = "text2text"
    out_dir: str = "runs/text2text"
    seed: int = 0
    data: TextDataConfig = field(default_factory=TextDataConfig)
    source_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    target_tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(kind="symbols"))
    source_text: TextNormalizerConfig = field(default_factory=_word_normalizer)
    target_text: TextNormalizerConfig = field(default_factory=_symbol_normalizer)
    model: Text2TextModelConfig = field(default_factory=Text2TextModelConfig)
    ctc_weight: float = 0.0
    label_smoothing: float = 0.1
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decoding: DecodingConfig = field(default_factory=_text2text_decoding)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self) -> None:
        _check_loss_weights(self.ctc_weight, self.label_smoothing)
        _check_time_budget(self.optim, self.trainer)
        if self.ctc_weight == 0.0 and self.decoding.ctc_weight > 0.0:
            raise ValueError(
                f"decoding.ctc_weight={self.decoding.ctc_weight} needs a CTC head trained with ctc_weight > 0"
            )


# Every experiment a recipe can run; ``task`` tells them apart. The task table (seq2seq.tasks) gives each
# its model, training and inference parts.
ExperimentConfig = Union[
    ASRExperimentConfig, TTSExperimentConfig, LMExperimentConfig, Text2TextExperimentConfig
]
EXPERIMENT_CLASSES: tuple[type, ...] = get_args(ExperimentConfig)


def experiment_class(task: object, where: str = "") -> type:
    """The experiment config class whose ``task`` is ``task``; a one-line ConfigError otherwise."""
    names = {get_args(get_type_hints(cls)["task"])[0]: cls for cls in EXPERIMENT_CLASSES}
    if task not in names:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}task={task!r} is not valid; choose one of {', '.join(names)}")
    return names[task]


def experiment_from_dict(data: dict, where: str = "") -> ExperimentConfig:
    """A typed experiment config from plain data (a YAML file, a checkpoint, a package)."""
    return from_dict(experiment_class(data.get("task", "asr"), where), data)


PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def resolve_config(path: str | Path) -> Path:
    """``path`` if it exists, else the recipe config of that name shipped in the package
    (``configs/asr/small.yaml`` and ``asr/small.yaml`` both work after a non-editable install)."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    packaged = PACKAGED_CONFIGS.joinpath(*parts)
    return packaged if packaged.is_file() else path


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a recipe config and its overrides into the experiment dataclass its ``task`` names."""
    path = resolve_config(path)
    return experiment_from_dict(merge(read_yaml(path), parse_overrides(overrides or [])), str(path))
