"""Model package format versions are checked on load, and a non-editable install carries its configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import tiny_asr_package

from seq2seq.core.package import FORMAT_VERSION, PackageError
from seq2seq.tasks import load_model_package

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, None, "1"])
def test_a_package_of_another_format_version_is_refused_naming_both(tmp_path, version):
    package = tiny_asr_package(tmp_path / "pkg")
    assert load_model_package(package).task == "asr"
    meta = json.loads((package / "config.json").read_text())
    assert meta["format"] == FORMAT_VERSION
    meta["format"] = version
    (package / "config.json").write_text(json.dumps(meta))
    with pytest.raises(PackageError, match=rf"package format {version!r}, this seq2seq reads format 1"):
        load_model_package(package)


@pytest.mark.slow
def test_a_non_editable_install_finds_its_recipe_configs(tmp_path):
    """`pip install .` then `seq2seq demo` needs configs/ inside the package, not the checkout."""
    source, target = tmp_path / "src", tmp_path / "site"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in listed:  # a copy of the checkout, so the build leaves nothing in it
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            (source / name).symlink_to((ROOT / name).readlink())
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    shipped = {p.name for p in (target / "seq2seq" / "configs" / "asr").glob("*.yaml")}
    in_checkout = {p.name for p in (ROOT / "seq2seq" / "configs" / "asr").glob("*.yaml")}
    assert shipped == in_checkout and "small.yaml" in shipped
    code = (
        "import seq2seq.experiments as e, seq2seq.demo as d\n"
        "assert e.__file__.startswith(sys.argv[1]), e.__file__\n"
        "assert (d.CONFIGS / 'tts' / 'small.yaml').is_file()\n"
        "print(e.load_experiment('configs/asr/small.yaml').task, e.load_experiment('tts/small.yaml').task,\n"
        "      e.load_experiment('configs/lm/small.yaml').task)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1])\n" + code, str(target)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["asr", "tts", "lm"]
