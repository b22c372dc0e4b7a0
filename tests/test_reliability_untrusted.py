"""Untrusted files: packages load without unpickling; checkpoints load as plain data unless trusted.

The table in docs/reliability.md lists each case with the test here that proves it.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from support import ALPHABET, assert_one_line_error, run_cli, tiny_asr_experiment, tiny_asr_package

from seq2seq.core.config import to_dict
from seq2seq.core.package import PackageError
from seq2seq.core.text import CharTokenizer
from seq2seq.models.asr import ASRModel
from seq2seq.tasks import load_model_package as load_package
from seq2seq.training.checkpointing import AtomicCheckpointIO, CheckpointError, load_checkpoint_file


def test_loading_a_package_never_unpickles(tmp_path, monkeypatch):
    package_dir = tiny_asr_package(tmp_path / "pkg")
    files = sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*") if p.is_file())
    assert files == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling while loading a package")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    package = load_package(package_dir)
    assert package.task == "asr" and package.tokenizer.vocab_size == package.model.config.vocab_size


def test_package_with_pickled_weights_is_refused(tmp_path):
    package_dir = tiny_asr_package(tmp_path / "pkg")
    torch.save(ASRModel(tiny_asr_experiment(33).model).state_dict(), package_dir / "model.safetensors")
    with pytest.raises(PackageError, match="model.safetensors: cannot read weights"):
        load_package(package_dir)


def test_package_config_is_data_and_is_validated(tmp_path):
    package_dir = tiny_asr_package(tmp_path / "pkg")
    config = package_dir / "config.json"
    config.write_text(
        config.read_text().replace('"num_heads": 2', '"num_heads": "!!python/object:os.system"', 1)
    )
    with pytest.raises(PackageError, match="num_heads"):
        load_package(package_dir)
    config.write_text("{not json")
    with pytest.raises(PackageError, match="config.json: not valid JSON"):
        load_package(package_dir)


def _checkpoint_with(tmp_path: Path, extra) -> Path:
    """A training-style checkpoint of a tiny model, with ``extra`` stored beside the weights."""
    tokenizer = CharTokenizer.build([ALPHABET])
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer.save(tokenizer_dir)
    experiment = tiny_asr_experiment(tokenizer.vocab_size)
    state = {f"model.{k}": v for k, v in ASRModel(experiment.model).state_dict().items()}
    checkpoint = {
        "global_step": 1,
        "state_dict": state,
        "extra": extra,
        "seq2seq": {"task": "asr", "config": to_dict(experiment), "tokenizer_dir": str(tokenizer_dir)},
    }
    path = tmp_path / "untrusted.ckpt"
    torch.save(checkpoint, path)
    return path


def test_checkpoint_holding_an_object_is_refused_unless_trusted(tmp_path):
    path = _checkpoint_with(tmp_path, argparse.Namespace(payload="would run code"))
    for load in (lambda: load_checkpoint_file(path), lambda: AtomicCheckpointIO().load_checkpoint(path)):
        with pytest.raises(CheckpointError, match="refused to unpickle argparse.Namespace") as caught:
            load()
        assert "--trust-checkpoint" in str(caught.value) and "\n" not in str(caught.value)
    assert load_checkpoint_file(path, weights_only=False)["extra"].payload == "would run code"


def test_plain_checkpoint_loads_without_trust(tmp_path):
    checkpoint = load_checkpoint_file(_checkpoint_with(tmp_path, {"note": [1, 2.5, "x"]}))
    assert checkpoint["extra"] == {"note": [1, 2.5, "x"]}


@pytest.mark.slow
def test_export_refuses_pickled_objects_in_one_line_and_trust_flag_allows_them(tmp_path):
    checkpoint = _checkpoint_with(tmp_path, argparse.Namespace(payload=1))
    refused = run_cli("export", checkpoint, tmp_path / "pkg")
    assert_one_line_error(
        refused, "untrusted.ckpt: refused to unpickle argparse.Namespace", "--trust-checkpoint"
    )
    assert not (tmp_path / "pkg").exists()
    trusted = run_cli("export", checkpoint, tmp_path / "pkg", "--trust-checkpoint")
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert load_package(tmp_path / "pkg").task == "asr"


def test_export_copies_only_a_real_tokenizer_folder(tmp_path):
    from seq2seq.tasks import export as export_run

    path = _checkpoint_with(tmp_path, None)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["seq2seq"]["tokenizer_dir"] = str(tmp_path / "somewhere else")  # e.g. "/etc" in a hostile file
    (tmp_path / "somewhere else").mkdir()
    torch.save(checkpoint, path)
    with pytest.raises(PackageError, match="no tokenizer.json"):
        export_run(path, tmp_path / "pkg")
