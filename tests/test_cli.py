"""The command line: every command has help; bad input is one line on stderr, never a traceback."""

from __future__ import annotations

import json

import pytest
from support import CONFIGS, assert_one_line_error, run_cli, tiny_asr_package, write_jsonl, write_tone

from seq2seq.cli import COMMANDS


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c != "prepare"] + ["prepare synthetic", "prepare librispeech"]
)
def test_every_command_has_help(command):
    result = run_cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: seq2seq" in result.stdout


def test_bad_config_values_stop_before_any_work(tmp_path):
    result = run_cli(
        "train",
        "--config",
        str(CONFIGS / "asr" / "small.yaml"),
        f"--out_dir={tmp_path / 'run'}",
        "--model.encoder.norm.kind=bn",
    )
    assert_one_line_error(result, "model.encoder.norm.kind", "batch_renorm")
    assert not (tmp_path / "run").exists()


def test_unknown_field_is_named(tmp_path):
    result = run_cli("train", "-c", str(CONFIGS / "asr" / "small.yaml"), "--trainer.max_stepz=3")
    assert_one_line_error(result, "trainer.max_stepz", "max_steps")


def test_missing_model_package_is_named(tmp_path):
    result = run_cli("transcribe", str(tmp_path / "no_model"), str(tmp_path / "a.wav"))
    assert_one_line_error(result, "no_model", "not a model package")


@pytest.fixture
def package_with_beam_3(tmp_path):
    """A tiny ASR package whose saved decoding settings are beam 3, CTC weight 0.5 (ratio 0.5)."""
    package = tiny_asr_package(tmp_path / "pkg")
    config = json.loads((package / "config.json").read_text())
    config["experiment"]["decoding"].update(beam_size=3, ctc_weight=0.5)
    (package / "config.json").write_text(json.dumps(config))
    return package


def test_a_packages_decoding_settings_are_used_unless_a_flag_overrides_them(package_with_beam_3):
    from seq2seq.cli import _transcriber

    saved = _transcriber(str(package_with_beam_3), "cpu", None, None).config
    assert (saved.beam_size, saved.ctc_weight, saved.max_length_ratio) == (3, 0.5, 0.5)
    flagged = _transcriber(str(package_with_beam_3), "cpu", 1, 0.0).config
    assert (flagged.beam_size, flagged.ctc_weight, flagged.max_length_ratio) == (1, 0.0, 0.5)


@pytest.mark.slow
def test_evaluate_decodes_with_the_packages_settings_unless_a_flag_overrides_them(
    package_with_beam_3, tmp_path
):
    wav = write_tone(tmp_path / "a.wav", seconds=0.5)
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": str(wav), "duration": 0.5, "text": "a"}])
    result = run_cli("evaluate", package_with_beam_3, manifest, "--out", tmp_path / "e.jsonl")
    assert result.returncode == 0, result.stderr
    assert "(beam 3, ctc_weight 0.5)" in result.stdout
    result = run_cli("evaluate", package_with_beam_3, manifest, "--beam-size", "1", "--ctc-weight", "0")
    assert result.returncode == 0, result.stderr
    assert "(beam 1, ctc_weight 0.0)" in result.stdout
