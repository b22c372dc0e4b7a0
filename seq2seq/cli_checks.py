"""Every value of every ``seq2seq`` option is checked before its command starts (``CHECKS``); a refusal
is one line that names the option, the value and the rule."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

MIN_WINDOW_SECONDS = 1.0  # shorter windows cut words apart: the model hears syllables, not speech
MAX_WINDOW_SECONDS = 600.0  # self-attention over a longer window needs tens of GB
MAX_COUNT = 10**9  # more utterances, sentences or strings than any corpus holds
MAX_MINUTES = 7 * 24 * 60.0  # a week

Check = Callable[[Any], str | None]  # the reason a value is refused, or None


class OptionError(ValueError):
    """A command-line value that its check refuses; the message names the option and the value."""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``, or ``(low, high]`` with ``open_low``; ``why`` explains a bound."""

    low: float
    high: float
    open_low: bool = False
    unit: str = ""
    why: str = ""

    def __call__(self, value: float) -> str | None:
        above_low = value > self.low if self.open_low else value >= self.low
        if above_low and value <= self.high:  # NaN fails both comparisons
            return None
        interval = f"{'(' if self.open_low else '['}{_number(self.low)}, {_number(self.high)}]{self.unit}"
        return f"must be in {interval}" + (f": {self.why}" if self.why else "")


@dataclasses.dataclass(frozen=True)
class Existing:
    """A path to read: a ``file``, a ``folder``, either (``any``), a model ``package`` or a recipe
    ``config`` (a file, or the name of one shipped with seq2seq)."""

    kind: Literal["file", "folder", "any", "package", "config"]

    def __call__(self, value: str) -> str | None:
        if not value.strip():
            return "an empty path"
        path = Path(value)
        if self.kind == "config":
            from seq2seq.experiments import resolve_config

            path = resolve_config(value)
        if self.kind == "package":
            from seq2seq.core.package import CONFIG

            if not (path / CONFIG).is_file():
                why = f"no {CONFIG}" if path.is_dir() else "no such folder"
                return f"not a model package ({why}); make one with `seq2seq export`"
            return None
        if not path.exists():
            return {"folder": "no such folder", "any": "no such file or folder"}.get(
                self.kind, "no such file"
            )
        if self.kind in ("file", "config") and not path.is_file():
            return "not a file"
        if self.kind == "folder" and not path.is_dir():
            return "not a folder"
        return None


@dataclasses.dataclass(frozen=True)
class Output:
    """A path to write, a ``file`` or a ``folder``: missing parent folders are made, so the nearest
    existing one must be a folder we may write in."""

    kind: Literal["file", "folder"]

    def __call__(self, value: str) -> str | None:
        if not value.strip():
            return "an empty path"
        path = Path(value).absolute()
        if self.kind == "file" and path.is_dir():
            return "is a folder, not a file"
        if self.kind == "folder" and path.exists() and not path.is_dir():
            return "exists and is not a folder"
        nearest = path if path.is_dir() else next(p for p in path.parents if p.exists())
        if not nearest.is_dir():
            return f"{nearest} is not a folder"
        if not os.access(nearest, os.W_OK | os.X_OK):
            return f"cannot write in {nearest} (permission denied)"
        return None


def device_string(value: str) -> str | None:
    """cpu, cuda, cuda:N or mps, present on this machine."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        return "not a device (cpu, cuda, cuda:N or mps)"
    import torch

    if value.startswith("cuda"):
        index, count = int(value.partition(":")[2] or 0), torch.cuda.device_count()
        if count == 0:
            return "CUDA is not available on this machine"
        return f"no such CUDA device ({count} visible)" if index >= count else None
    if value == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    return None


def label(value: str) -> str | None:
    """A label such as a speaker or an eSpeak NG language: letters, digits, ``.``, ``+``, ``-``, ``_``."""
    return None if re.fullmatch(r"[\w.+-]+", value) else "not a name (letters, digits, '.', '+', '-', '_')"


def non_empty_path(value: str) -> str | None:
    """A non-empty path (an empty one would mean the current folder)."""
    return None if value.strip() else "an empty path"


def free_text(value: str) -> None:
    """Anything: sentences to speak, words to pronounce (blank ones are skipped)."""


# Per parameter name, or ``command:name`` where a name means something else in one command. Flags and
# choices are checked by argparse; tests/test_reliability_options.py fails for any other parameter
# that has no check here.
CHECKS: dict[str, Check] = {
    # read
    "model": Existing("package"),
    "asr_model": Existing("package"),
    "init_from": Existing("package"),
    "lm": Existing("package"),
    "config": Existing("config"),
    "checkpoint": Existing("any"),
    "manifest": Existing("file"),
    "calibration_manifest": Existing("file"),
    "text_file": Existing("file"),
    "exclude": Existing("file"),
    "source_dir": Existing("folder"),
    "inputs": non_empty_path,  # a missing input is one error line of its own, and the others go on
    "texts": free_text,
    "words": free_text,  # a word the vocabulary cannot represent is one error line, and the others go on
    "input": Existing("file"),
    "lexicon": Existing("file"),
    # written
    "out_dir": Output("folder"),
    "out": Output("folder"),
    "evaluate:out": Output("file"),
    "output": Output("file"),
    "out_file": Output("file"),
    # numbers
    "batch_size": Range(1, 4096),
    "beam_size": Range(1, 256),
    "nbest": Range(1, 256, why="at most the largest beam"),
    "ctc_weight": Range(0, 1),
    "lm_weight": Range(0, 10, why="the LM's log-probability next to the ASR model's, weight 1"),
    "length_bonus": Range(0, 10, why="a bonus per token, against log-probabilities of a few nats"),
    "ctc_window": Range(0, 100_000, unit=" frames", why="0 reads every frame"),
    "average": Range(1, 1000),
    "quantize_tolerance": Range(0, 100, unit=" CER points"),
    "limit": Range(1, MAX_COUNT),
    "window_seconds": Range(
        MIN_WINDOW_SECONDS,
        MAX_WINDOW_SECONDS,
        unit=" s",
        why=f"windows shorter than MIN_WINDOW_SECONDS={MIN_WINDOW_SECONDS} s hold syllables, not words",
    ),
    "seed": Range(0, 2**32 - 1),
    "num_train": Range(1, MAX_COUNT),
    "count": Range(1, MAX_COUNT),
    "size": Range(1, MAX_COUNT),
    "lexicon_weight": Range(0, 10, why="the word list's log-probability next to the ASR model's, weight 1"),
    "oov_penalty": Range(0, 1000, why="nats for a word outside the word list"),
    "num_dev": Range(1, MAX_COUNT),
    "num_test": Range(1, MAX_COUNT),
    "num_tts": Range(0, MAX_COUNT),
    "connected_train": Range(0, MAX_COUNT),
    "connected_held_out": Range(0, MAX_COUNT),
    "sample_rate": Range(8000, 192000, unit=" Hz"),
    "num_workers": Range(1, 1024),
    "vocab_size": Range(7, 1_000_000, why="5 reserved ids and at least 2 symbols"),
    "minutes": Range(0, MAX_MINUTES, open_low=True, unit=" min"),
    "tts_minutes": Range(0, MAX_MINUTES, unit=" min", why="0 skips TTS"),
    # names
    "device": device_string,
    "test_speaker": label,
    "dev_speaker": label,
    "language": label,
}


def option_check(function: Callable, parameter: str) -> Check | None:
    """The check of one parameter of a command (None: argparse checks it, or it is not on the CLI)."""
    return CHECKS.get(f"{function.__name__}:{parameter}", CHECKS.get(parameter))


def is_option(param: inspect.Parameter) -> bool:
    """Given as ``--name`` (True) or by position (False)."""
    if param.kind is param.VAR_POSITIONAL:
        return False
    return param.default is not param.empty or param.kind is param.KEYWORD_ONLY


def check_options(function: Callable, values: dict) -> None:
    """Raise OptionError for the first value its check refuses, before the command starts.

    Values that are None (an option left unset) are not checked.
    """
    for param in inspect.signature(function).parameters.values():
        value, check = values.get(param.name), option_check(function, param.name)
        if value is None or check is None:
            continue
        for item in value if param.kind is param.VAR_POSITIONAL or isinstance(value, list) else [value]:
            reason = check(item)
            if reason:
                flag = f"--{param.name.replace('_', '-')}" if is_option(param) else param.name
                raise OptionError(f"{flag}={shlex.quote(str(item))}: {reason}")
