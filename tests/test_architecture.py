"""Imports flow one way: only seq2seq/training and the CLI import Lightning; nn imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")
ABOVE_NN = ("seq2seq.models", "seq2seq.decoding", "seq2seq.training", "seq2seq.cli", "seq2seq.package")


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of every module ``source`` imports, at any depth (inside functions too).

    Args:
        source: Python source text.
        package: dotted package of the module, used to resolve relative imports.
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_of(path: Path) -> set[str]:
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    return imported_modules(path.read_text(), package)


def modules_outside_training() -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    return [p for p in paths if "training" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "cli.py"]


def is_under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def test_the_walk_finds_the_package():
    names = {p.relative_to(PACKAGE).as_posix() for p in modules_outside_training()}
    assert {"nn/norms.py", "nn/transformer.py", "models/asr.py"} <= names
    assert not any(n.startswith("training/") for n in names) and "cli.py" not in names


@pytest.mark.parametrize("path", modules_outside_training(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_lightning_outside_training(path):
    offending = sorted(n for n in imports_of(path) if is_under(n, LIGHTNING))
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "nn").rglob("*.py")), ids=lambda p: p.name)
def test_nn_imports_nothing_above_it(path):
    offending = sorted(n for n in imports_of(path) if is_under(n, ABOVE_NN))
    assert not offending, f"nn/{path.name} imports {offending}"


def test_checker_sees_relative_nested_and_aliased_imports():
    source = (
        "from ..training import module\nfrom . import masking\ndef f():\n    import lightning.pytorch as pl\n"
    )
    names = imported_modules(source, "seq2seq.nn")
    assert is_under("seq2seq.training.module", ABOVE_NN) and "seq2seq.training.module" in names
    assert "seq2seq.nn.masking" in names
    assert any(is_under(n, LIGHTNING) for n in names)
    assert not is_under("lightningish", LIGHTNING)
