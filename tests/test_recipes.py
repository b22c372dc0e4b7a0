"""The recipes' shell scripts stay runnable: every `seq2seq train` line names a config that exists and
overrides that the config accepts (a renamed field would otherwise break a recipe only at its train
step, after its data preparation)."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from support import ROOT

from seq2seq.experiments import load_experiment

SCRIPTS = sorted((ROOT / "recipes").glob("*/*.sh"))


def train_commands(script) -> list[list[str]]:
    """The arguments after ``seq2seq train`` on each train line of ``script``, continuations joined."""
    lines = script.read_text().replace("\\\n", " ").splitlines()
    code = [shlex.split(line, comments=True) for line in lines]
    return [words[words.index("train") + 1 :] for words in code if "seq2seq" in words and "train" in words]


def config_and_overrides(arguments: list[str]) -> tuple[str, list[str]]:
    config = arguments[arguments.index("-c" if "-c" in arguments else "--config") + 1]
    overrides = [a for a in arguments if re.fullmatch(r"--[a-z_]+(\.[a-z_]+)*=[^$]*", a)]
    return config, overrides


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: f"{s.parent.name}/{s.name}")
def test_recipe_train_lines_load(script):
    for arguments in train_commands(script):
        config, overrides = config_and_overrides(arguments)
        assert (ROOT / config).is_file(), f"{script}: {config} does not exist"
        load_experiment(ROOT / config, overrides)


def test_the_synthetic_recipe_trains_the_conformer_for_an_hour():
    (arguments,) = train_commands(ROOT / "recipes" / "synthetic" / "run.sh")
    path, overrides = config_and_overrides(arguments)
    config = load_experiment(ROOT / path, overrides)
    assert config.model.encoder_kind == "conformer" and config.trainer.max_minutes == 60


FOLDS = ROOT / "recipes" / "fsdd" / "folds.sh"


def empty_recordings(folder, names) -> None:
    """An FSDD-shaped folder of empty files: enough for the folds script's checks, which run first."""
    (folder / "recordings").mkdir()
    for name in names:
        (folder / "recordings" / name).write_bytes(b"")


def test_the_fsdd_folds_script_refuses_a_folder_with_fewer_than_three_speakers(tmp_path):
    empty_recordings(tmp_path, ("0_ann_0.wav", "1_bob_0.wav", "notes.txt"))
    result = subprocess.run(["bash", FOLDS, tmp_path], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {tmp_path}/recordings: fewer than 3 speakers\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("ways", "package", "error"),
    [
        ("finetuned", "-", "error: WAYS=finetuned needs PRETRAINED_PACKAGE"),
        ("scratch tuned", "pkg", "error: WAYS: unknown training 'tuned' (scratch, finetuned)"),
    ],
)
def test_the_fsdd_folds_script_refuses_trainings_it_cannot_run(tmp_path, ways, package, error):
    empty_recordings(tmp_path, ("0_ann_0.wav", "1_bob_0.wav", "2_cy_0.wav"))
    env = {"PATH": "/usr/bin:/bin", "WAYS": ways}
    result = subprocess.run(
        ["bash", FOLDS, tmp_path, package], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", error + "\n")
    assert not (tmp_path / "runs").exists()


def test_the_fsdd_folds_script_refuses_an_unknown_dev_split(tmp_path):
    empty_recordings(tmp_path, ("0_ann_0.wav", "1_bob_0.wav", "2_cy_0.wav"))
    env = {"PATH": "/usr/bin:/bin", "DEV": "nobody"}
    result = subprocess.run(["bash", FOLDS, tmp_path], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: DEV: unknown dev split 'nobody' (takes, speaker)\n"
    assert not (tmp_path / "runs").exists()


def test_the_fsdd_folds_script_passes_train_args_to_every_training(tmp_path):
    """TRAIN_ARGS reaches `seq2seq train` word by word (an ablation over the folds); a failed training
    stops the script."""
    empty_recordings(tmp_path, ("0_ann_0.wav", "1_bob_0.wav", "2_cy_0.wav"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "seq2seq"
    fake.write_text('#!/bin/sh\necho "$@" >>"$CALLS"\n[ "$1" != train ]\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "TRAIN_ARGS": "--model.utterance_mean_norm=true  --data.augment.speed_factors=[0.8,1.2]",
    }
    result = subprocess.run(
        ["bash", FOLDS, tmp_path, "-", "bob"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    prepare, train = calls.read_text().splitlines()
    assert prepare.startswith(f"prepare fsdd {tmp_path} data/fsdd_folds/bob --test-speaker bob")
    words = train.split()
    assert words[:4] == ["train", "-c", "configs/asr/fsdd.yaml", "--out_dir=runs/fsdd_folds/bob/scratch"]
    assert words[4:6] == ["--model.utterance_mean_norm=true", "--data.augment.speed_factors=[0.8,1.2]"]
