"""Experiment configs: YAML and ``--a.b.c=value`` overrides fill typed, frozen dataclasses.

YAML only supplies values; the dataclasses define every default and validate themselves. A wrong
field, type or value is a one-line :class:`ConfigError` naming the field and the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the field."""


# ---------------------------------------------------------------------------------------------
# Generic machinery


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from plain data, checking field names, types and choices."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        name = where.rstrip(".") or cls.__name__
        raise ConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}{key}: unknown field; valid fields: {', '.join(names)}")
    kwargs = {key: _convert(hints[key], value, f"{where}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        prefix = f"{where.rstrip('.')}: " if where else ""
        raise ConfigError(f"{prefix}{error}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} is not valid; choose one of {', '.join(map(str, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        allowed = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"{where}={value!r}: expected {allowed}, got {type(value).__name__}")
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _convert_scalar(tp, value, where)


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    if tp is Path and isinstance(value, (str, Path)):
        return Path(value)
    if typing.get_origin(tp) is dict and isinstance(value, dict):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}={value!r}: expected {name}, got {type(value).__name__}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe data of a config (tuples become lists, paths strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return plain(dataclasses.asdict(config))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--model.encoder.num_layers=4", "--trainer.max_steps", "10"]`` -> nested dict.

    Values are read as YAML scalars (``4`` is an int, ``true`` a bool, ``[1, 2]`` a list).
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"{arg}: expected an override like --section.field=value")
        key, sep, text = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key}: missing value")
            i, text = i + 1, args[i + 1]
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text)
        i += 1
    return overrides


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data or {}


# ---------------------------------------------------------------------------------------------
# Training configs shared by the ASR and TTS recipes


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warm-up schedule.

    Attributes:
        lr: peak learning rate, reached at the end of warm-up.
        warmup_steps: linear warm-up length (Noam: then decays as 1/sqrt(step)).
        schedule: ``noam`` (warm-up then inverse square root), ``constant`` (warm-up then flat) or
            ``cosine`` (warm-up, then a half cosine down to ``final_lr_ratio`` at ``decay_steps``).
        decay_steps: cosine only: step at which the decay ends (about the run's length in steps).
        final_lr_ratio: cosine only: the rate after ``decay_steps``, as a fraction of ``lr``.
        weight_decay: decoupled weight decay.
        betas: Adam moments; 0.98 is the Transformer's usual choice.
    """

    lr: float = 1e-3
    warmup_steps: int = 1000
    schedule: Literal["noam", "constant", "cosine"] = "noam"
    decay_steps: int | None = None
    final_lr_ratio: float = 0.0
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.98)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, warmup_steps and weight_decay >= 0")
        if self.schedule == "cosine" and (self.decay_steps is None or self.decay_steps <= self.warmup_steps):
            raise ValueError("schedule=cosine needs decay_steps > warmup_steps")
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
class TokenizerConfig:
    """How the recipe's tokenizer is made (trained on the training manifest when first needed).

    Attributes:
        kind: ``char``, ``phoneme`` (eSpeak NG IPA, for TTS), ``unigram`` or ``bpe`` (sentencepiece).
        vocab_size: sentencepiece vocabulary size (ignored for characters and phonemes).
        language: eSpeak NG voice that phonemises the text (``phoneme`` only).
    """

    kind: Literal["char", "phoneme", "unigram", "bpe"] = "char"
    vocab_size: int = 256
    language: str = "en-us"


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read a recipe config and its overrides into the experiment dataclass its ``task`` names."""
    data = merge(read_yaml(path), parse_overrides(overrides or []))
    task = data.get("task", "asr")
    classes = experiment_classes()
    if task not in classes:
        raise ConfigError(f"{path}: task={task!r} is not valid; choose one of {', '.join(classes)}")
    return from_dict(classes[task], data)


def experiment_classes() -> dict[str, type]:
    """Experiment config class per task name (imported late: experiments import models and data)."""
    from seq2seq.experiments import ASRExperimentConfig, TTSExperimentConfig

    return {"asr": ASRExperimentConfig, "tts": TTSExperimentConfig}
