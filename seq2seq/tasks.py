"""The table of tasks: for each, its experiment config, model, training parts and inference entry point.

Everything that differs between tasks is looked up here, so adding a task is one row (plus its classes)
rather than a string comparison in every command. The table sits above training and inference; the
training parts are imported only when asked for, so loading a package for inference never imports
Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seq2seq.core.config import ConfigError
from seq2seq.core.package import (
    ModelPackage,
    PackageError,
    load_weights_into,
    read_package_config,
    read_package_tokenizer,
)
from seq2seq.experiments import (
    ASRExperimentConfig,
    ExperimentConfig,
    Text2TextExperimentConfig,
    TTSExperimentConfig,
    experiment_from_dict,
)
from seq2seq.inference.generate import Generator
from seq2seq.inference.synthesize import Synthesizer
from seq2seq.inference.transcribe import Transcriber
from seq2seq.models.asr import ASRModel
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


def _text2text_training() -> TrainingParts:
    from seq2seq.training.datamodules import TextPairDataModule
    from seq2seq.training.text2text_module import Text2TextTask

    return TrainingParts(Text2TextTask, TextPairDataModule)


TASKS: dict[str, Task] = {
    "asr": Task("asr", ASRExperimentConfig, ASRModel, Transcriber, _asr_training),
    "tts": Task("tts", TTSExperimentConfig, TTSModel, Synthesizer, _tts_training),
    "text2text": Task("text2text", Text2TextExperimentConfig, Text2TextModel, Generator, _text2text_training),
}


def task_of(experiment: ExperimentConfig) -> Task:
    """The table row of an experiment config."""
    return TASKS[experiment.task]


def load_model_package(directory: str | Path, device: str | torch.device = "cpu") -> ModelPackage:
    """Config, model (eval mode, on ``device``) and tokenizer of a package; nothing is unpickled."""
    directory = Path(directory)
    name, data = read_package_config(directory)
    where = str(directory / "config.json")
    try:
        experiment = experiment_from_dict({**data, "task": name}, where)
    except ConfigError as error:
        message = str(error)
        raise PackageError(message if message.startswith(where) else f"{where}: {message}") from None
    model = task_of(experiment).model(experiment.model)
    load_weights_into(model, directory, device)
    tokenizer = read_package_tokenizer(directory)
    return ModelPackage(name, experiment, model.to(device).eval(), tokenizer, directory)


def load_package(directory: str | Path, device: str | torch.device = "cpu") -> Any:
    """A package, ready to use: ``Transcriber`` for ASR (``.transcribe(files)``), ``Synthesizer`` for
    TTS (``.synthesize(texts)``), ``Generator`` for text2text (``.generate(words)``). Plain PyTorch on
    ``device``; Lightning is never imported."""
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
) -> Path:
    """A checkpoint, or the average of a run folder's ``average`` best (or last) ones -> a package."""
    from seq2seq.training.checkpointing import CheckpointError
    from seq2seq.training.export import export_run, read_checkpoints

    paths, loaded, meta = read_checkpoints(checkpoint, average, trust, select)
    try:
        experiment = experiment_from_dict(meta["config"], str(paths[-1]))
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    parts = task_of(experiment).training()
    return export_run(paths, loaded, meta, experiment, parts.module, parts.datamodule, out_dir, stats_batches)
