"""The layers of docs/architecture.md hold: the import-linter contract passes, the document lists the
contract's layers, the task table covers every experiment, and inference never imports Lightning."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from support import ROOT, tiny_asr_package, write_tone


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{len(contracts())} kept, 0 broken" in result.stdout


def test_architecture_doc_lists_the_contract_layers_in_order():
    layers = next(c for c in contracts() if c["type"] == "layers" and "containers" not in c)["layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("## Layers", 1)[1].split("```")[1]
    documented = [line.split("  ")[0].strip() for line in block.strip().splitlines() if line.strip()]
    expected = [" | ".join(m.removeprefix("seq2seq.") for m in layer.split(" | ")) for layer in layers]
    assert documented == expected


def test_every_experiment_has_a_task_and_every_task_an_experiment():
    from seq2seq.experiments import EXPERIMENT_CLASSES
    from seq2seq.tasks import TASKS

    assert {task.experiment for task in TASKS.values()} == set(EXPERIMENT_CLASSES)
    for name, task in TASKS.items():
        assert task.name == name and task.experiment().task == name


def test_the_public_api_names_resolve():
    import seq2seq

    assert set(seq2seq.__all__) <= set(dir(seq2seq))
    for name in seq2seq.__all__:
        assert getattr(seq2seq, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        seq2seq.not_a_name  # noqa: B018


SCRIPT = """
import sys, seq2seq
model = seq2seq.load_package(sys.argv[1])
texts = model.transcribe([sys.argv[2]], batch_size=1)
assert len(texts) == 1 and isinstance(texts[0], str), texts
names = ("lightning", "pytorch_lightning", "lightning_fabric")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in names)
print("LIGHTNING", loaded)
"""


def test_loading_a_package_and_transcribing_never_imports_lightning(tmp_path):
    package = tiny_asr_package(tmp_path / "pkg")
    wav = write_tone(tmp_path / "one.wav", seconds=0.5)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(package), str(wav)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LIGHTNING []" in result.stdout


def test_the_transcribe_command_never_imports_lightning(tmp_path):
    package = tiny_asr_package(tmp_path / "pkg")
    wav = write_tone(tmp_path / "one.wav", seconds=0.5)
    code = (
        "import sys, runpy\n"
        "sys.argv = ['seq2seq', 'transcribe', sys.argv[1], sys.argv[2]]\n"
        "try:\n    runpy.run_module('seq2seq', run_name='__main__')\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "names = ('lightning', 'lightning_fabric')\n"
        "print('EXIT', code, sorted(m for m in sys.modules if m.split('.')[0] in names))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(package), str(wav)], capture_output=True, text=True, timeout=300
    )
    assert re.search(r"EXIT 0 \[\]", result.stdout), result.stdout + result.stderr[-2000:]
