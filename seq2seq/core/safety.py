"""Output paths derived from untrusted names (manifest ids, user-given names) stay inside their folder."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^\w.+=@-]+")  # \w is Unicode-aware: non-ASCII letters and digits are kept


def safe_name(name: str, max_length: int = 120) -> str:
    """A single, harmless file-name component for ``name``.

    Separators, ``..``, control characters and other punctuation become ``_``; leading dots are dropped
    (no hidden files, no ``..``); an empty result becomes ``_``. Names already safe come back unchanged.

    Args:
        name: an utterance id or a user-given output name.
        max_length: longest result in characters (file systems limit a name to 255 bytes).
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned[:max_length] or "_"


def output_path(out_dir: str | Path, name: str, suffix: str = "") -> Path:
    """``out_dir / (safe_name(name) + suffix)``, checked to lie inside ``out_dir``.

    Raises:
        ValueError: the result would escape ``out_dir`` (cannot happen with ``safe_name``; a second guard).
    """
    out_dir = Path(out_dir)
    path = out_dir / f"{safe_name(name)}{suffix}"
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"{name!r}: output name would leave {out_dir}")
    return path
