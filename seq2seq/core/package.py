"""Model packages: the only thing inference loads, and nothing in them is unpickled.

A package is a folder::

    model.safetensors   weights and buffers (feature statistics included)
    config.json         {"task": "asr" | "tts", "format": 1, "experiment": {...}}  (FORMAT_VERSION),
                        optionally "precision": "int8" (linear layers quantized when loaded)
    tokenizer/          the tokenizer's JSON (and sentencepiece model)
    lexicon.txt         optional (ASR): the word list the search spells words from (`export --lexicon`)
    onnx/               optional: the ONNX graphs (seq2seq.inference.onnx_files)

It is written into a temporary sibling folder and swapped into place (one atomic exchange on Linux),
so a kill mid-write leaves the previous package intact. A folder that is not a package is never replaced.
This module knows the files, not the tasks: :func:`seq2seq.tasks.load_model_package` builds the model.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from seq2seq.core.text import Tokenizer, load_tokenizer

FORMAT_VERSION = 1
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer"
LEXICON = "lexicon.txt"
PRECISIONS = ("fp32", "int8")


class PackageError(ValueError):
    """A model package that cannot be loaded; the message names the folder and the problem."""


@dataclass
class ModelPackage:
    """A loaded package: the experiment config, the model in eval mode, its tokenizer, and its word
    list's path when it has one."""

    task: str
    config: Any
    model: nn.Module
    tokenizer: Tokenizer
    path: Path
    lexicon: Path | None = None


def save_package(
    out_dir: str | Path,
    task: str,
    experiment_dict: dict,
    state_dict: dict[str, torch.Tensor],
    tokenizer_dir: str | Path,
    lexicon: str | Path | None = None,
) -> Path:
    """Write a package atomically (temporary folder, then rename); ``lexicon``: a word list to include."""
    out_dir = Path(out_dir)
    occupied = out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()))
    if occupied and not (out_dir / CONFIG).is_file():
        raise PackageError(f"{out_dir}: exists and is not a model package; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the package from others on a shared machine
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, staging / WEIGHTS)
        meta = {"task": task, "format": FORMAT_VERSION, "experiment": experiment_dict}
        (staging / CONFIG).write_text(json.dumps(meta, indent=2))
        shutil.copytree(tokenizer_dir, staging / TOKENIZER)
        if lexicon is not None:
            shutil.copyfile(lexicon, staging / LEXICON)
        _replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` into ``target``; afterwards ``new`` holds the old package (the caller removes it).

    Where an atomic exchange is unsupported, two renames: a kill between them leaves the old package
    beside the target as ``.<name>.old-<pid>``.
    """
    if target.exists():
        if _exchange(new, target):
            return
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def read_package_config(directory: str | Path) -> tuple[str, dict]:
    """The task name and the plain experiment data of a package, after checking its format version."""
    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise PackageError(f"{directory}: not a model package (no {CONFIG}); make one with `seq2seq export`")
    try:
        meta = json.loads((directory / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PackageError(f"{directory / CONFIG}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("experiment"), dict):
        raise PackageError(f"{directory / CONFIG}: no 'experiment' mapping; not a seq2seq model package")
    version = meta.get("format")
    if version != FORMAT_VERSION:
        raise PackageError(
            f"{directory / CONFIG}: package format {version!r}, this seq2seq reads format {FORMAT_VERSION}; "
            "export the package again with this version"
        )
    return meta.get("task"), meta["experiment"]


def read_package_precision(directory: str | Path) -> str:
    """``fp32``, or ``int8`` when the package asks for its linear layers to be quantized on loading."""
    path = Path(directory) / CONFIG
    precision = json.loads(path.read_text()).get("precision", "fp32")
    if precision not in PRECISIONS:
        raise PackageError(f"{path}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def write_package_precision(directory: str | Path, precision: str) -> None:
    """Record the precision the package's model is loaded in (the weights stay fp32)."""
    path = Path(directory) / CONFIG
    meta = json.loads(path.read_text())
    meta["precision"] = precision
    staging = path.with_name(f".{CONFIG}.tmp")
    staging.write_text(json.dumps(meta, indent=2))
    os.replace(staging, path)


def copy_model_files(source: str | Path, destination: str | Path) -> Path:
    """A package's weights, config and tokenizer copied into ``destination`` (its word list, evaluation
    outputs and ONNX graphs are left): how a package that another one needs (the G2P model of a TTS
    tokenizer) travels inside it."""
    source, destination = Path(source), Path(destination)
    if not (source / CONFIG).is_file():
        raise PackageError(f"{source}: no {CONFIG}; not a model package")
    destination.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG):
        shutil.copyfile(source / name, destination / name)
    shutil.copytree(source / TOKENIZER, destination / TOKENIZER, dirs_exist_ok=True)
    return destination


def read_weights(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The package's tensors (safetensors: nothing is unpickled)."""
    path = Path(directory) / WEIGHTS
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, FileNotFoundError, OSError) as error:
        raise PackageError(f"{path}: cannot read weights ({error})") from None


def misfits(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Why ``state`` cannot be loaded into ``model``, one phrase per tensor (empty: it fits exactly)."""
    expected = model.state_dict()
    reasons = [
        f"{k} {tuple(state[k].shape)} in the package, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    reasons += [f"{k} missing from the package" for k in sorted(set(expected) - set(state))]
    return reasons + [f"{k} not in the model" for k in sorted(set(state) - set(expected))]


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], where: str, into: str) -> None:
    """Load ``state`` into ``model``; a one-line PackageError naming up to three misfit tensors."""
    reasons = misfits(model, state)
    if reasons:
        raise PackageError(f"{where}: {len(reasons)} tensors do not fit {into}: {'; '.join(reasons[:3])}")
    model.load_state_dict(state)


def load_weights_into(model: nn.Module, directory: str | Path, device: str | torch.device = "cpu") -> None:
    """Load the package's weights into ``model``; a one-line error when they do not match its config."""
    where = Path(directory) / WEIGHTS
    load_state_checked(model, read_weights(directory, device), str(where), "the model its config describes")


def read_package_tokenizer(directory: str | Path) -> Tokenizer:
    return load_tokenizer(Path(directory) / TOKENIZER)
