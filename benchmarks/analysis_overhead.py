"""Cost of the ``analysis.landscape_every`` probe: training steps/s with no callback, the option off, and on.

Each variant fits the real ``ASRTask`` through Lightning's Trainer (``build_trainer``'s callbacks and
loggers aside: a bare Trainer, so only the probe differs) for ``--steps`` steps over the same synthetic
batches (the study's pilot model: d_model 64, 2 encoder + 1 decoder layers, 32 front-end channels,
dropout 0.1, batch norm in both stacks so the statistics probe runs too). Steps/s are measured from step
``--skip`` to the end. Variants, interleaved in a fresh random order each round, ratios to ``none`` taken
within a round:

- ``none``: no callback.
- ``off``: ``analysis.landscape_every=0``, i.e. whatever ``analysis_callbacks`` returns for it (nothing).
- ``every N``: the probe every N steps (its amortised cost), and each probe's seconds / a step's seconds.

Usage::

    python benchmarks/analysis_overhead.py [--steps 60] [--every 10 30] [--rounds 3]

Steps per wall-clock second and per CPU second of this process (the steadier number on a shared machine).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import machine, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "analysis_overhead.json"
BATCH, MIN_FRAMES, MAX_FRAMES, TOKENS, VOCAB = 8, 200, 300, 30, 32


def batches(count: int):
    from seq2seq.data.datasets import ASRBatch

    g = torch.Generator().manual_seed(0)
    result = []
    for i in range(count):
        lengths = torch.randint(MIN_FRAMES, MAX_FRAMES + 1, (BATCH,), generator=g)
        lengths[0] = MAX_FRAMES
        token_lengths = torch.randint(TOKENS // 2, TOKENS + 1, (BATCH,), generator=g)
        features = torch.randn(BATCH, MAX_FRAMES, 80, generator=g) * (
            torch.arange(MAX_FRAMES) < lengths[:, None]
        ).unsqueeze(-1)
        tokens = torch.randint(6, VOCAB, (BATCH, TOKENS), generator=g)
        ids = [f"{i}-{j}" for j in range(BATCH)]
        result.append(ASRBatch(ids, features, lengths, tokens, token_lengths))
    return result


def experiment():
    from seq2seq.core.config import from_dict
    from seq2seq.experiments import ASRExperimentConfig

    stack = {
        "num_layers": 2,
        "d_model": 64,
        "num_heads": 4,
        "ffn_dim": 256,
        "dropout": 0.1,
        "norm": {"kind": "batch"},
    }
    model = {
        "vocab_size": VOCAB,
        "conv_channels": 32,
        "encoder": stack,
        "decoder": {**stack, "num_layers": 1},
    }
    return from_dict(ASRExperimentConfig, {"model": model, "optim": {"warmup_steps": 10}})


class StepClock:
    """Wall time from the start of step ``skip`` to the end of the last step."""

    def __init__(self, skip: int):
        import lightning as L

        class Clock(L.Callback):
            def on_train_batch_start(inner, trainer, module, batch, batch_idx):
                if trainer.global_step == skip:
                    self.start, self.start_cpu = time.perf_counter(), time.process_time()

            def on_train_end(inner, trainer, module):
                self.end, self.end_cpu = time.perf_counter(), time.process_time()

        self.callback = Clock()
        self.start = self.end = self.start_cpu = self.end_cpu = 0.0


def fit(variant: str, every: int, args, data, out: Path) -> dict:
    import lightning as L

    from seq2seq.core.text import CharTokenizer
    from seq2seq.experiments import AnalysisConfig
    from seq2seq.training.analysis import LandscapeProbe, analysis_callbacks
    from seq2seq.training.asr_module import ASRTask

    torch.manual_seed(0)
    config = experiment()
    task = ASRTask(config, CharTokenizer.build(["abcdefghijklmnopqrstuvwxyz "]), str(out))
    clock = StepClock(args.skip)
    probe = (
        analysis_callbacks(AnalysisConfig(landscape_every=every), out / variant) if variant != "none" else []
    )
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock.callback, *probe],
        default_root_dir=out,
    )
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    steps = args.steps - args.skip
    result = {
        "steps_per_s": steps / (clock.end - clock.start),
        "steps_per_cpu_s": steps / (clock.end_cpu - clock.start_cpu),
        "callbacks": len(probe),
    }
    if probe and isinstance(probe[0], LandscapeProbe) and probe[0].step_seconds:
        result["step_seconds"] = statistics.median(probe[0].step_seconds)
    return result


def run(args) -> dict:
    import logging
    import tempfile

    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    data = batches(args.steps)
    variants = {"none": 0, "off": 0, **{f"every {n}": n for n in args.every}}
    rounds: list[dict] = []
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            names = list(variants)
            order.shuffle(names)
            results = {name: fit(name, variants[name], args, data, Path(tmp) / f"r{index}") for name in names}
            for name, every in variants.items():
                probes = Path(tmp) / f"r{index}" / name / "analysis" / "probes.jsonl"
                if every and probes.is_file():
                    import json

                    records = [json.loads(line) for line in probes.read_text().splitlines()]
                    timed = [r for r in records if r["train_step_seconds"]]
                    results[name]["probe_seconds"] = statistics.median(r["seconds"] for r in records)
                    if timed:
                        results[name]["probe_in_steps"] = statistics.median(
                            r["seconds"] / r["train_step_seconds"] for r in timed
                        )
            rounds.append(results)
    summary = {}
    for name in variants:
        ratios = [r[name]["steps_per_s"] / r["none"]["steps_per_s"] for r in rounds]
        summary[name] = {
            "steps_per_s": statistics.median(r[name]["steps_per_s"] for r in rounds),
            "ratio_to_none": statistics.median(ratios),
            "steps_per_cpu_s": statistics.median(r[name]["steps_per_cpu_s"] for r in rounds),
            "cpu_ratio_to_none": statistics.median(
                r[name]["steps_per_cpu_s"] / r["none"]["steps_per_cpu_s"] for r in rounds
            ),
            **{
                k: statistics.median(r[name][k] for r in rounds if k in r[name])
                for k in ("probe_seconds", "probe_in_steps")
                if any(k in r[name] for r in rounds)
            },
        }
    return {
        "machine": machine(),
        "steps": args.steps,
        "skip": args.skip,
        "summary": summary,
        "rounds": rounds,
    }


def print_table(result: dict) -> None:
    print(
        f"{result['steps']} steps (timed from step {result['skip']}), "
        f"median of {len(result['rounds'])} rounds"
    )
    header = f"{'steps/s':>9}{'vs none':>9}{'steps/cpu-s':>12}{'vs none':>9}{'probe s':>9}{'probe/step':>11}"
    print(f"{'variant':<12}{header}")
    for name, row in result["summary"].items():
        probe = f"{row['probe_seconds']:>9.2f}" if "probe_seconds" in row else f"{'':>9}"
        steps = f"{row['probe_in_steps']:>11.1f}" if "probe_in_steps" in row else ""
        print(
            f"{name:<12}{row['steps_per_s']:>9.2f}{row['ratio_to_none']:>9.3f}"
            f"{row['steps_per_cpu_s']:>12.2f}{row['cpu_ratio_to_none']:>9.3f}{probe}{steps}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per variant and round")
    parser.add_argument("--skip", type=int, default=5, help="steps not timed (start-up, the step-0 probe)")
    parser.add_argument("--every", type=int, nargs="+", default=[10, 30], help="probe intervals to time")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args()
    result = run(args)
    print_table(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
