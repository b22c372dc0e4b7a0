"""The table of tasks: for each, its experiment config, model, training parts and inference entry point.

Everything that differs between tasks is looked up here, so adding a task is one row (plus its classes)
rather than a string comparison in every command. The table sits above training and inference; the
training parts are imported only when asked for, so loading a package for inference never imports
Lightning.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seq2seq.core.config import ConfigError
from seq2seq.core.package import (
    CONFIG,
    TOKENIZER,
    ModelPackage,
    read_package_config,
    read_weights,
    save_package,
    write_package_precision,
)
from seq2seq.experiments import (
    ASRExperimentConfig,
    ExperimentConfig,
    LMExperimentConfig,
    Text2TextExperimentConfig,
    TTSExperimentConfig,
    experiment_from_dict,
)
from seq2seq.inference.generate import Generator
from seq2seq.inference.lexicon import check_word_list
from seq2seq.inference.lm import LanguageModelScorer
from seq2seq.inference.packages import load_model_package_with
from seq2seq.inference.pronounce import bind_pronouncer
from seq2seq.inference.synthesize import Synthesizer
from seq2seq.inference.transcribe import Transcriber
from seq2seq.models.asr import ASRModel
from seq2seq.models.lm import LanguageModel
from seq2seq.models.text2text import Text2TextModel
from seq2seq.models.tts import TTSModel

if TYPE_CHECKING:
    import lightning as L


@dataclass(frozen=True)
class TrainingParts:
    """A task's Lightning side: ``module(experiment, tokenizer, tokenizer_dir)`` holds the losses and
    optimizer; ``datamodule(experiment.data, tokenizer)`` reads its manifests."""

    module: type[L.LightningModule]
    datamodule: type[L.LightningDataModule]


@dataclass(frozen=True)
class Task:
    """One row of the table.

    Attributes:
        name: the ``task`` field of configs, checkpoints and packages.
        experiment: the experiment config class a recipe YAML fills.
        model: the plain ``nn.Module``, built from ``experiment.model``.
        inference: what :func:`load_package` returns for this task (``Transcriber``, ``Synthesizer``).
        training: imports and returns the training parts (Lightning is loaded only then).
    """

    name: str
    experiment: type
    model: Callable[[Any], nn.Module]
    inference: Callable[[ModelPackage], Any]
    training: Callable[[], TrainingParts]


def _asr_training() -> TrainingParts:
    from seq2seq.training.asr_module import ASRTask
    from seq2seq.training.datamodules import ASRDataModule

    return TrainingParts(ASRTask, ASRDataModule)


def _tts_training() -> TrainingParts:
    from seq2seq.training.datamodules import TTSDataModule
    from seq2seq.training.tts_module import TTSTask

    return TrainingParts(TTSTask, TTSDataModule)


def _lm_training() -> TrainingParts:
    from seq2seq.training.datamodules import LMDataModule
    from seq2seq.training.lm_module import LMTask

    return TrainingParts(LMTask, LMDataModule)


def _text2text_training() -> TrainingParts:
    from seq2seq.training.datamodules import TextPairDataModule
    from seq2seq.training.text2text_module import Text2TextTask

    return TrainingParts(Text2TextTask, TextPairDataModule)


TASKS: dict[str, Task] = {
    "asr": Task("asr", ASRExperimentConfig, ASRModel, Transcriber, _asr_training),
    "tts": Task("tts", TTSExperimentConfig, TTSModel, Synthesizer, _tts_training),
    "lm": Task("lm", LMExperimentConfig, LanguageModel, LanguageModelScorer, _lm_training),
    "text2text": Task("text2text", Text2TextExperimentConfig, Text2TextModel, Generator, _text2text_training),
}


def task_of(experiment: ExperimentConfig) -> Task:
    """The table row of an experiment config."""
    return TASKS[experiment.task]


def load_model_package(directory: str | Path, device: str | torch.device = "cpu") -> ModelPackage:
    """Config, model (eval mode, on ``device``) and tokenizer of a package; nothing is unpickled. A
    ``g2p`` tokenizer gets the G2P model it carries, to pronounce words it has not met."""
    package = load_model_package_with(
        directory, lambda experiment: task_of(experiment).model(experiment.model), device
    )
    bind_pronouncer(package.tokenizer)
    return package


def load_package(directory: str | Path, device: str | torch.device = "cpu") -> Any:
    """A package, ready to use: ``Transcriber`` for ASR (``.transcribe(files)``), ``Synthesizer`` for
    TTS (``.synthesize(texts)``), ``LanguageModelScorer`` for LM (``.perplexity(sentences)``),
    ``Generator`` for text2text (``.generate(words)``). Plain PyTorch on ``device``; Lightning is
    never imported."""
    package = load_model_package(directory, device)
    return TASKS[package.task].inference(package)


def train(
    experiment: ExperimentConfig,
    callbacks: list[L.Callback] | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train an experiment with its task's Lightning parts; rerunning resumes (see ``training.run``).
    ``init_from``: a model package to start from (its weights, statistics and tokenizer)."""
    from seq2seq.training.run import fit

    parts = task_of(experiment).training()
    return fit(experiment, parts.module, parts.datamodule, callbacks, init_from)


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    average: int = 1,
    trust: bool = False,
    select: str = "best",
    stats_batches: int = 50,
    lexicon: str | Path | None = None,
) -> Path:
    """A checkpoint, or the average of a run folder's ``average`` best (or last) ones -> a package.

    A package folder as ``checkpoint`` is copied (weights, config, tokenizer, word list) to ``out_dir``,
    so that :func:`deploy` can add ONNX graphs or int8 to a copy of a package without its run folder.
    ``lexicon``: a word list (ASR, character tokenizer) to include; it is checked before anything is
    written."""
    if (Path(checkpoint) / CONFIG).is_file():
        return _copy_package(Path(checkpoint), Path(out_dir), lexicon)
    from seq2seq.training.checkpointing import CheckpointError
    from seq2seq.training.export import export_run, read_checkpoints

    paths, loaded, meta = read_checkpoints(checkpoint, average, trust, select)
    try:
        experiment = experiment_from_dict(meta["config"], str(paths[-1]))
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    parts = task_of(experiment).training()
    return export_run(
        paths, loaded, meta, experiment, parts.module, parts.datamodule, out_dir, stats_batches, lexicon
    )


def _copy_package(source: Path, out_dir: Path, lexicon: str | Path | None) -> Path:
    package = load_model_package(source)  # a package that does not load is not copied
    if lexicon is not None:
        check_word_list(lexicon, package.task, package.tokenizer)
    if source.resolve() == out_dir.resolve() and lexicon is None:
        return out_dir
    name, experiment = read_package_config(source)
    words = lexicon if lexicon is not None else package.lexicon
    return save_package(out_dir, name, experiment, read_weights(source), source / TOKENIZER, words)


@dataclass(frozen=True)
class Deployment:
    """What ``seq2seq export`` adds to a package for deployment.

    Attributes:
        onnx: write the ONNX graphs (``onnx/``) for ``--engine onnx``.
        precision: ``int8`` quantizes the linear layers (both engines), after pricing it in CER.
        calibration_manifest: the manifest int8 is priced on (needed for int8).
        tolerance: most CER points (absolute) int8 may lose, per engine, before it is refused.
    """

    onnx: bool = False
    precision: str = "fp32"
    calibration_manifest: str | None = None
    tolerance: float = 0.5

    def __post_init__(self) -> None:
        if self.precision == "int8" and self.calibration_manifest is None:
            raise ConfigError("--quantize int8 needs --calibration-manifest: its CER cost is measured there")


def deploy(package_dir: str | Path, deployment: Deployment, report: Callable[[str], None] = print) -> None:
    """Add ONNX graphs and/or int8 to a package; int8 that loses more than the tolerance is refused
    (QuantizationError) and the package stays fp32 (with fp32 graphs when ONNX was asked for)."""
    from seq2seq.inference.onnx_files import ONNX_DIR

    package_dir = Path(package_dir)
    package = load_model_package(package_dir)
    if deployment.precision == "int8" and package.task != "asr":
        raise ConfigError(f"{package_dir}: --quantize int8 is priced in CER, so it is for ASR packages only")
    with tempfile.TemporaryDirectory(prefix=".deploy-", dir=package_dir) as staging:
        fp32 = _export_onnx(package, Path(staging) / "fp32") if deployment.onnx else None
        chosen = fp32
        try:
            if deployment.precision == "int8":
                chosen = _quantize(package, fp32, Path(staging) / "int8", deployment, report)
        finally:
            if chosen is not None:
                shutil.rmtree(package_dir / ONNX_DIR, ignore_errors=True)
                chosen.directory.rename(package_dir / ONNX_DIR)
    if deployment.precision == "int8":
        write_package_precision(package_dir, "int8")


def _export_onnx(package: ModelPackage, directory: Path):
    from seq2seq.inference.onnx_export import export_model

    return export_model(package, directory)


def _quantize(package: ModelPackage, fp32, directory: Path, deployment: Deployment, report):
    """Price int8 per engine; the int8 ONNX manifest (or None without ONNX) when every cost is tolerated."""
    from seq2seq.evaluation.quantization import check_cost, engine_cost, torch_cost
    from seq2seq.inference.onnx_engine import OnnxASR
    from seq2seq.inference.quantization import quantize_onnx

    manifest = str(deployment.calibration_manifest)
    cost = torch_cost(package, manifest)
    report(cost.line())
    check_cost(cost, deployment.tolerance)
    if fp32 is None:
        return None
    int8 = quantize_onnx(fp32, directory)
    cost = engine_cost("onnxruntime", package, OnnxASR(fp32.directory), OnnxASR(int8.directory), manifest)
    report(cost.line())
    check_cost(cost, deployment.tolerance)
    return int8
