"""Normalization study: the same small ASR model trained under each norm x placement, equal step budgets.

Every run goes through the real training code (``seq2seq.training.run.train``) with overrides applied by
``seq2seq.config.load_experiment`` to ``configs/asr/small.yaml``. Results: ``curves.csv`` (every logged
metric of every run, from ``logs/version_*/metrics.csv``), ``results.json`` / ``results.csv`` (final
metrics per run, plus the train-mode vs eval-mode validation loss of the batch-statistic runs) and
``study.png``.

Usage::

    python recipes/norm_study/study.py [--out runs/norm_study] [--steps 120] [--subset 600] [--no-extras]

Finished runs are skipped when the command is repeated (a killed run resumes from its last checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from seq2seq.config import load_experiment  # noqa: E402
from seq2seq.data.manifest import read_manifest, write_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/asr/small.yaml"
NORMS = ("layer", "batch", "rms", "power", "batch_renorm", "group")
PLACEMENTS = ("pre", "post")
log = logging.getLogger("norm_study")


@dataclass(frozen=True)
class Run:
    """One training run: a name, the group it belongs to and its overrides (on top of the study's base)."""

    name: str
    group: str
    overrides: dict[str, object] = field(default_factory=dict)


def both_stacks(norm: str, placement: str) -> dict[str, object]:
    return {
        f"model.{stack}.{key}": value
        for stack in ("encoder", "decoder")
        for key, value in (("norm.kind", norm), ("placement", placement))
    }


def plan(extras: bool, small_batch_frames: int) -> list[Run]:
    """The main grid, then the extra comparisons (each reuses a grid run as its reference)."""
    runs = [
        Run(f"{norm}-{placement}", "grid", both_stacks(norm, placement))
        for norm in NORMS
        for placement in PLACEMENTS
    ]
    if not extras:
        return runs
    small = {"data.max_frames": small_batch_frames}
    runs += [
        Run(f"{norm}-pre-smallbatch", "small_batch", {**both_stacks(norm, "pre"), **small})
        for norm in ("layer", "batch", "batch_renorm")
    ]
    runs.append(
        Run(
            "decoder_batch-pre",
            "decoder_norm",
            {**both_stacks("layer", "pre"), "model.decoder.norm.kind": "batch"},
        )
    )
    runs += [
        Run(f"{norm}-post-nowarmup", "warmup", {**both_stacks(norm, "post"), "optim.warmup_steps": 0})
        for norm in ("layer", "batch")
    ]
    return runs


def make_subsets(out: Path, train_size: int, dev_size: int, seed: int) -> tuple[Path, Path]:
    """Random subsets of the synthetic train/dev manifests (audio paths made absolute by the writer)."""
    paths = []
    for split, size in (("train", train_size), ("dev", dev_size)):
        utterances, problems = read_manifest(ROOT / f"data/synthetic/{split}.jsonl")
        if problems:
            raise SystemExit(f"data/synthetic/{split}.jsonl: {problems[0]}")
        chosen = random.Random(seed).sample(utterances, min(size, len(utterances)))
        paths.append(write_manifest(out / f"{split}_{size}.jsonl", chosen))
    return paths[0], paths[1]


def base_overrides(args: argparse.Namespace, train: Path, dev: Path) -> dict[str, object]:
    """The reduced model and equal budget every run shares."""
    stack = {"d_model": args.d_model, "num_heads": 4, "ffn_dim": 4 * args.d_model, "dropout": 0.1}
    overrides: dict[str, object] = {
        "seed": args.seed,
        "data.train_manifest": str(train),
        "data.dev_manifest": str(dev),
        "data.test_manifest": None,
        "data.cache_dir": str(args.out / "cache"),
        "model.encoder.num_layers": args.encoder_layers,
        "model.decoder.num_layers": args.decoder_layers,
        "optim.warmup_steps": args.warmup,
        "trainer.max_steps": args.steps,
        "trainer.max_minutes": None,
        "trainer.val_every_steps": args.val_every,
        "trainer.checkpoint_every_steps": args.steps,
        "trainer.keep_best": 1,
        "trainer.log_every_steps": 5,
    }
    for stack_name in ("encoder", "decoder"):
        overrides.update({f"model.{stack_name}.{k}": v for k, v in stack.items()})
        # batch renorm / PowerNorm warm-ups default to 500 steps: longer than the whole budget, during
        # which batch renorm *is* batch norm. Scale them to the study's warm-up.
        for warmup in ("renorm_warmup_steps", "power_warmup_steps"):
            overrides[f"model.{stack_name}.norm.{warmup}"] = args.warmup
    return overrides


def as_cli(overrides: dict[str, object]) -> list[str]:
    return [f"--{key}={'null' if value is None else json.dumps(value)}" for key, value in overrides.items()]


def train_run(run: Run, base: dict[str, object], out: Path) -> Path:
    from seq2seq.training.run import train

    experiment = load_experiment(CONFIG, as_cli({**base, **run.overrides, "out_dir": str(out / run.name)}))
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
        for k in ("val_loss", "val_cer", "val_wer", "val_ctc_loss", "val_attention_loss")
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
    from seq2seq.nn.norms import batch_statistic_norms
    from seq2seq.text import load_tokenizer
    from seq2seq.training.checkpointing import load_checkpoint_file
    from seq2seq.training.run import build_datamodule, build_task

    experiment = load_experiment(run_dir / "config.yaml")
    tokenizer_dir = run_dir / "tokenizer"
    tokenizer = load_tokenizer(tokenizer_dir)
    import dataclasses

    experiment = dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, vocab_size=tokenizer.vocab_size)
    )
    task = build_task(experiment, tokenizer, tokenizer_dir)
    state = load_checkpoint_file(run_dir / "checkpoints/last.ckpt")
    task.load_state_dict(state["state_dict"])
    datamodule = build_datamodule("asr", experiment, tokenizer)
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
            size = batch.features.shape[0]
            total += float(task.losses(batch)["loss"]) * size
            frames += size
        result[f"val_loss_norms_{mode}"] = total / frames
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs/norm_study", help="study folder")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (equal budget)")
    parser.add_argument("--val-every", type=int, default=100, help="validate every this many steps")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up steps of every run (extras aside)")
    parser.add_argument("--subset", type=int, default=600, help="training utterances")
    parser.add_argument("--dev-subset", type=int, default=100, help="validation utterances")
    parser.add_argument("--d-model", type=int, default=96, help="model dimension")
    parser.add_argument("--encoder-layers", type=int, default=2, help="encoder layers")
    parser.add_argument("--decoder-layers", type=int, default=1, help="decoder layers")
    parser.add_argument("--small-batch-frames", type=int, default=1500, help="max_frames of small-batch runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run and of the subsets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-extras", action="store_true", help="only the norm x placement grid")
    parser.add_argument("--only", nargs="*", help="run only these run names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train_manifest, dev_manifest = make_subsets(args.out, args.subset, args.dev_subset, args.seed)
    base = base_overrides(args, train_manifest, dev_manifest)
    runs = [
        r for r in plan(not args.no_extras, args.small_batch_frames) if not args.only or r.name in args.only
    ]
    for run in runs:
        if not (args.out / run.name / "done.json").is_file():
            log.info("training %s", run.name)
            train_run(run, base, args.out)
    from report import write_report  # this folder is on sys.path when run as a script

    write_report(args.out, runs, final_metrics, read_curves, norm_mode_gap)


if __name__ == "__main__":
    main()
