"""Bad G2P (text2text) packages and inputs: each is one clean ``error:`` line, never a traceback.

The table in docs/reliability.md lists each case with the test here that proves it.
"""

from __future__ import annotations

import json

import pytest
from support import assert_one_line_error, run_main, tiny_asr_package, tiny_g2p_package

from seq2seq.core.package import PackageError
from seq2seq.tasks import load_model_package


@pytest.fixture
def package(tmp_path):
    return tiny_g2p_package(tmp_path / "g2p")


def _config(package) -> dict:
    return json.loads((package / "config.json").read_text())


def test_truncated_weights_are_one_line(package, capsys):
    weights = package / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(PackageError, match="model.safetensors: cannot read weights"):
        load_model_package(package)
    assert_one_line_error(
        run_main(capsys, "generate", package, "cat"), "model.safetensors", "cannot read weights"
    )


def test_a_config_from_another_task_is_one_line(package, tmp_path, capsys):
    asr = _config(tiny_asr_package(tmp_path / "asr"))
    (package / "config.json").write_text(json.dumps(asr))  # ASR config over G2P weights and tokenizers
    line = assert_one_line_error(
        run_main(capsys, "generate", package, "cat"), "model.safetensors", "do not fit"
    )
    assert "tensors" in line
    meta = _config(tiny_g2p_package(tmp_path / "again"))
    meta["task"] = "tts"  # the G2P experiment labelled as another task
    (package / "config.json").write_text(json.dumps(meta))
    assert_one_line_error(run_main(capsys, "generate", package, "cat"), "config.json", "task")


def test_a_package_of_the_wrong_format_version_is_one_line(package, capsys):
    meta = _config(package)
    meta["format"] = 99
    (package / "config.json").write_text(json.dumps(meta))
    assert_one_line_error(
        run_main(capsys, "generate", package, "cat"), "package format 99", "export the package again"
    )


def test_packages_of_other_tasks_are_refused_by_the_other_commands(package, tmp_path, capsys):
    asr = tiny_asr_package(tmp_path / "asr")
    assert_one_line_error(run_main(capsys, "generate", asr, "cat"), "asr package cannot generate")
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    assert_one_line_error(run_main(capsys, "transcribe", package, wav), "text2text package cannot transcribe")


def test_a_broken_text_manifest_line_is_named(package, tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text('{"text": "cat", "target": "K AE T"}\n{"text": "dog"}\n')
    assert_one_line_error(run_main(capsys, "evaluate", package, manifest), "test.jsonl:2", "target")
