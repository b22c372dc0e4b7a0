"""The command line: every command has help; bad input is one line on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONFIGS

from seq2seq.cli import COMMANDS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c != "prepare"] + ["prepare synthetic", "prepare librispeech"]
)
def test_every_command_has_help(command):
    result = run(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: seq2seq" in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_bad_config_values_stop_before_any_work(tmp_path):
    result = run(
        "train",
        "--config",
        str(CONFIGS / "asr" / "small.yaml"),
        f"--out_dir={tmp_path / 'run'}",
        "--model.encoder.norm.kind=bn",
    )
    assert_one_line_error(result, "model.encoder.norm.kind", "batch_renorm")
    assert not (tmp_path / "run").exists()


def test_unknown_field_is_named(tmp_path):
    result = run("train", "-c", str(CONFIGS / "asr" / "small.yaml"), "--trainer.max_stepz=3")
    assert_one_line_error(result, "trainer.max_stepz", "max_steps")


def test_missing_model_package_is_named(tmp_path):
    result = run("transcribe", str(tmp_path / "no_model"), str(tmp_path / "a.wav"))
    assert_one_line_error(result, "no_model", "not a model package")
