"""Normalization study: the same small ASR (or TTS) model trained under each norm x placement, equal budgets.

Every run goes through the real training code (``seq2seq.tasks.train``) with overrides applied by
``seq2seq.experiments.load_experiment`` to ``configs/asr/small.yaml`` (``--task tts``:
``configs/tts/small.yaml``,
whose prenet and postnet convolutions then take the run's norm as well; ``--encoder conformer``: a Conformer
encoder, whose convolution modules do too). Results: ``curves.csv`` (every logged
metric of every run, from ``logs/version_*/metrics.csv``), ``results.json`` / ``results.csv`` (final
metrics per run, plus the train-mode vs eval-mode validation loss of the batch-statistic runs) and
``study.png``.

Usage::

    python recipes/norm_study/study.py [--task asr|tts] [--out DIR] [--steps 120] [--subset 600] [--no-extras]

Finished runs are skipped when the command is repeated (a killed run resumes from its last checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from seq2seq.data.manifest import read_manifest, write_manifest  # noqa: E402
from seq2seq.experiments import load_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NORMS = ("layer", "batch", "rms", "power", "batch_renorm", "group", "none")
CONV_NORMS = ("batch", "batch_renorm", "power", "layer", "rms", "group", "none")  # Conformer conv module
UNMASKED_CONV_NORMS = ("batch", "batch_renorm", "power")  # frame-wise norms never see the mask
PLACEMENTS = ("pre", "post")
ENCODERS = ("transformer", "conformer")
log = logging.getLogger("norm_study")


@dataclass(frozen=True)
class Task:
    """What differs between the ASR and the TTS study."""

    config: Path
    train_split: str  # manifests under data/synthetic
    dev_split: str
    conv_norms: tuple[str, ...]  # model fields of convolution norms that follow the run's norm
    metric: str  # second validation metric shown next to the loss


TASKS = {
    "asr": Task(ROOT / "configs/asr/small.yaml", "train", "dev", (), "val_cer"),
    "tts": Task(
        ROOT / "configs/tts/small.yaml",
        "tts_train",
        "tts_dev",
        ("prenet_norm", "postnet_norm"),
        "val_l1_after",
    ),
}


def study_task(name: str, encoder: str) -> Task:
    """The task's study; on a Conformer encoder its convolution-module norm follows each run's norm too."""
    task = TASKS[name]
    if encoder == "transformer":
        return task
    if name != "asr":
        raise SystemExit(f"--encoder {encoder}: only the ASR study has a Conformer encoder")
    return dataclasses.replace(task, conv_norms=(*task.conv_norms, "conformer.conv_norm"))


@dataclass(frozen=True)
class Run:
    """One training run: a name, the group it belongs to and its overrides (on top of the study's base)."""

    name: str
    group: str
    overrides: dict[str, object] = field(default_factory=dict)


def both_stacks(norm: str, placement: str, conv_norms: tuple[str, ...] = ()) -> dict[str, object]:
    overrides: dict[str, object] = {
        f"model.{stack}.{key}": value
        for stack in ("encoder", "decoder")
        for key, value in (("norm.kind", norm), ("placement", placement))
    }
    return overrides | {f"model.{conv}.kind": norm for conv in conv_norms}


def conformer_runs() -> list[Run]:
    """The Conformer (layer norm, pre) under each convolution-module norm, masked and not (issue #15)."""
    base = {"model.encoder_kind": "conformer", **both_stacks("layer", "pre")}
    runs = [
        Run(f"conformer-conv_{norm}", "conv_norm", {**base, "model.conformer.conv_norm.kind": norm})
        for norm in CONV_NORMS
    ]
    return runs + [
        Run(
            f"conformer-conv_{norm}-unmasked",
            "conv_norm",
            {**base, "model.conformer.conv_norm.kind": norm, "model.conformer.conv_norm_masked": False},
        )
        for norm in UNMASKED_CONV_NORMS
    ]


def plan(
    extras: bool, small_batch_frames: int, conv_norms: tuple[str, ...] = (), conformer: bool = False
) -> list[Run]:
    """The main grid, then the extra comparisons (each reuses a grid run as its reference)."""
    stacks = functools.partial(both_stacks, conv_norms=conv_norms)
    runs = [
        Run(f"{norm}-{placement}", "grid", stacks(norm, placement))
        for norm in NORMS
        for placement in PLACEMENTS
    ]
    if not extras:
        return runs
    small = {"data.max_frames": small_batch_frames}
    runs += [
        Run(f"{norm}-pre-smallbatch", "small_batch", {**stacks(norm, "pre"), **small})
        for norm in ("layer", "batch", "batch_renorm")
    ]
    runs.append(
        Run(
            "decoder_batch-pre",
            "decoder_norm",
            {**stacks("layer", "pre"), "model.decoder.norm.kind": "batch"},
        )
    )
    runs += [
        Run(f"{norm}-post-nowarmup", "warmup", {**stacks(norm, "post"), "optim.warmup_steps": 0})
        for norm in ("layer", "batch")
    ]
    return runs + feature_runs(conv_norms) + (conformer_runs() if conformer else [])


def feature_runs(conv_norms: tuple[str, ...] = ()) -> list[Run]:
    """Input scale, the seed of the idea: no global CMVN, and no CMVN with one Mel band x100 (issue #17).

    With CMVN on, the scaled band's statistics undo the scaling exactly, so that run would repeat
    ``layer-pre``; only the runs without it are new.
    """
    plain = {**both_stacks("layer", "pre", conv_norms), "model.feature_norm": False}
    return [
        Run("layer-pre-nocmvn", "features", plain),
        Run("layer-pre-nocmvn-band100", "features", {**plain, "model.feature_scale_band": 10}),
    ]


def make_subsets(
    out: Path, task: Task, train_size: int, dev_size: int, seed: int, data: Path
) -> tuple[Path, Path]:
    """Random subsets of the corpus's train/dev manifests (audio paths made absolute by the writer)."""
    paths = []
    for split, size in ((task.train_split, train_size), (task.dev_split, dev_size)):
        utterances, problems = read_manifest(data / f"{split}.jsonl")
        if problems:
            raise SystemExit(f"{data}/{split}.jsonl: {problems[0]}")
        chosen = random.Random(seed).sample(utterances, min(size, len(utterances)))
        paths.append(write_manifest(out / f"{split}_{size}.jsonl", chosen))
    return paths[0], paths[1]


def base_overrides(args: argparse.Namespace, task: Task, train: Path, dev: Path) -> dict[str, object]:
    """The reduced model (ASR; the TTS model is already small) and the equal budget every run shares."""
    stack = {"d_model": args.d_model, "num_heads": 4, "ffn_dim": 4 * args.d_model, "dropout": 0.1}
    if args.task == "tts":
        stack = {}
    overrides: dict[str, object] = {
        "data.train_manifest": str(train),
        "data.dev_manifest": str(dev),
        "data.test_manifest": None,
        "data.cache_dir": str(args.out / "cache"),
        "optim.warmup_steps": args.warmup,
        "trainer.max_steps": args.steps,
        "trainer.max_minutes": None,
        "trainer.val_every_steps": args.val_every,
        "trainer.checkpoint_every_steps": args.steps,
        "trainer.keep_best": 1,
        "trainer.log_every_steps": 5,
        "analysis.landscape_every": args.probe_every,
        "analysis.ics_update": args.ics_update,
    }
    if load_experiment(task.config).optim.schedule == "cosine":  # anneal over the study's budget
        overrides["optim.decay_steps"] = args.steps
    if args.task == "asr":
        overrides |= {
            "model.encoder_kind": args.encoder,
            "model.encoder.num_layers": args.encoder_layers,
            "model.decoder.num_layers": args.decoder_layers,
        }
    for stack_name in ("encoder", "decoder"):
        overrides.update({f"model.{stack_name}.{k}": v for k, v in stack.items()})
    # batch renorm / PowerNorm warm-ups default to 500 steps: longer than the whole budget, during
    # which batch renorm *is* batch norm. Scale them to the study's warm-up.
    for norm in ("encoder.norm", "decoder.norm", *task.conv_norms):
        for warmup in ("renorm_warmup_steps", "power_warmup_steps"):
            overrides[f"model.{norm}.{warmup}"] = args.warmup
    return overrides


def parse_setting(setting: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set``: the value is JSON where it parses (numbers, true, null), else text."""
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set {setting}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def as_cli(overrides: dict[str, object]) -> list[str]:
    return [f"--{key}={'null' if value is None else json.dumps(value)}" for key, value in overrides.items()]


def run_dir(out: Path, run: Run, seed: int) -> Path:
    return out / run.name / f"seed{seed}"


def train_run(run: Run, seed: int, task: Task, base: dict[str, object], out: Path) -> Path:
    """One seed of a run: the seed sets initialisation, dropout/SpecAugment draws and batch order."""
    from seq2seq.tasks import train

    seeded = {"seed": seed, "data.seed": seed, "out_dir": str(run_dir(out, run, seed))}
    experiment = load_experiment(task.config, as_cli({**base, **run.overrides, **seeded}))
    start = time.perf_counter()
    out_dir = train(experiment)
    (out_dir / "done.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return out_dir


def read_curves(run_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with path.open() as f:
            rows += [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return rows


def final_metrics(curves: list[dict[str, str]]) -> dict[str, float]:
    """Last validation row and the mean training loss over the last 20 logged steps."""
    val = [r for r in curves if "val_loss" in r]
    train = [float(r["train_loss"]) for r in curves if "train_loss" in r]
    last = val[-1] if val else {}
    metrics = {
        k: float(last[k])
        for k in (
            "val_loss",
            "val_cer",
            "val_wer",
            "val_ctc_loss",
            "val_attention_loss",
            "val_l1_after",
            "val_stop",
        )
        if k in last
    }
    if train:
        metrics["train_loss_last20"] = sum(train[-20:]) / len(train[-20:])
    return metrics


@torch.no_grad()
def norm_mode_gap(run_dir: Path) -> dict[str, float]:
    """Validation loss of the final model with batch-statistic norms in eval mode and in train mode.

    Dropout and SpecAugment stay off in both; train mode normalises each validation batch by its own
    statistics (and, in the decoder, by statistics that include future positions).
    """
    from seq2seq.core.text import load_tokenizer
    from seq2seq.nn.norms import batch_statistic_norms
    from seq2seq.tasks import task_of
    from seq2seq.training.checkpointing import load_checkpoint_file

    experiment = load_experiment(run_dir / "config.yaml")
    tokenizer_dir = run_dir / "tokenizer"
    tokenizer = load_tokenizer(tokenizer_dir)

    experiment = dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, vocab_size=tokenizer.vocab_size)
    )
    parts = task_of(experiment).training()
    task = parts.module(experiment, tokenizer, tokenizer_dir)
    state = load_checkpoint_file(run_dir / "checkpoints/last.ckpt")
    task.load_state_dict(state["state_dict"])
    datamodule = parts.datamodule(experiment.data, tokenizer)
    datamodule.setup("validate")
    batches = list(datamodule.val_dataloader())
    norms = batch_statistic_norms(task)
    result = {}
    for mode in ("eval", "train"):
        task.eval()
        for m in norms:
            m.train(mode == "train")
        total = frames = 0.0
        for batch in batches:
            size = len(batch.ids)
            total += float(task.losses(batch)["loss"]) * size
            frames += size
        result[f"val_loss_norms_{mode}"] = total / frames
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="asr", help="which recipe's small model")
    parser.add_argument(
        "--out", type=Path, help="study folder (default runs/norm_study, or runs/norm_study_tts)"
    )
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (equal budget)")
    parser.add_argument("--val-every", type=int, default=100, help="validate every this many steps")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up steps of every run (extras aside)")
    parser.add_argument("--subset", type=int, default=600, help="training utterances")
    parser.add_argument("--dev-subset", type=int, default=100, help="validation utterances")
    parser.add_argument("--d-model", type=int, default=96, help="model dimension (ASR)")
    parser.add_argument("--encoder-layers", type=int, default=2, help="encoder layers (ASR)")
    parser.add_argument("--decoder-layers", type=int, default=1, help="decoder layers (ASR)")
    parser.add_argument(
        "--encoder",
        choices=ENCODERS,
        default="transformer",
        help="ASR encoder of every run; a Conformer's convolution-module norm takes the run's norm too",
    )
    parser.add_argument("--small-batch-frames", type=int, default=1500, help="max_frames of small-batch runs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per run (0..N-1): mean ± 95%% t interval")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the train/dev subsets")
    parser.add_argument(
        "--probe-every", type=int, default=25, help="analysis.landscape_every of every run (0: no probes)"
    )
    parser.add_argument(
        "--ics-update",
        choices=("sgd", "optimizer"),
        default="sgd",
        help="analysis.ics_update: the earlier layers' step for ICS (SGD at the lr, or the AdamW step)",
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data/synthetic", help="corpus folder (manifests)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-extras", action="store_true", help="only the norm x placement grid")
    parser.add_argument("--only", nargs="*", help="run only these run names")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more overrides of every run's base, as the CLI takes them (e.g. optim.schedule=cosine)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    task = study_task(args.task, args.encoder)
    args.out = args.out or ROOT / ("runs/norm_study" if args.task == "asr" else "runs/norm_study_tts")
    args.out.mkdir(parents=True, exist_ok=True)
    train_manifest, dev_manifest = make_subsets(
        args.out, task, args.subset, args.dev_subset, args.subset_seed, args.data
    )
    base = base_overrides(args, task, train_manifest, dev_manifest) | dict(
        parse_setting(setting) for setting in args.set
    )
    # The convolution-norm comparison holds the block norms at layer norm: a Transformer study's extra.
    conformer_extras = args.task == "asr" and args.encoder == "transformer"
    runs = [
        r
        for r in plan(not args.no_extras, args.small_batch_frames, task.conv_norms, conformer_extras)
        if not args.only or r.name in args.only
    ]
    seeds = range(args.seeds)
    for run in runs:
        for seed in seeds:
            if not (run_dir(args.out, run, seed) / "done.json").is_file():
                log.info("training %s seed %d", run.name, seed)
                train_run(run, seed, task, base, args.out)
    from report import write_report  # this folder is on sys.path when run as a script

    write_report(args.out, runs, seeds, final_metrics, read_curves, norm_mode_gap, task.metric)


if __name__ == "__main__":
    main()
