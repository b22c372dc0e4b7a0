"""Atomic checkpoint writes and clear errors for damaged checkpoints."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

CORRUPT = "checkpoint is truncated or corrupt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A kill at any moment leaves either the previous file or the complete new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_file(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """Load a checkpoint on CPU; by default without unpickling arbitrary objects.

    Raises:
        CheckpointError: missing, truncated, corrupt, or (with ``weights_only``) holding code objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # torch names the first object it would not load; anything else it rejects is damaged bytes.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found is None:
            raise CheckpointError(f"{path}: {CORRUPT} (unreadable pickle data)") from None
        raise CheckpointError(
            f"{path}: refused to unpickle {found.group(1)} (only tensors and plain "
            "data load safely); pass --trust-checkpoint only for files you made"
        ) from None
    except Exception as error:  # noqa: BLE001 - damaged bytes raise IndexError, KeyError, struct.error...
        raise CheckpointError(f"{path}: {CORRUPT} ({type(error).__name__})") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and reports damaged files in one line."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        # Resuming reads our own training state (optimizer, loops), which holds plain containers only, so a
        # file dropped into the run folder cannot run code: weights_only unless the caller insists otherwise.
        return load_checkpoint_file(path, weights_only=True if weights_only is None else bool(weights_only))
