"""Bucketed vs random batching at the same padded-frame budget: padding, loading and training throughput.

    python benchmarks/bucketing.py [--manifest data/synthetic/train.jsonl] [--max-frames 20000]

Training throughput is real (unpadded) feature frames per second through full training steps of the
``configs/asr/small.yaml`` model (forward, hybrid loss, backward, AdamW) on the first ``--train-batches``
batches of each scheme, alternated so that both see the same machine load.

Without ``--manifest`` a small synthetic corpus is prepared in a temporary folder. Prints a table and writes
``benchmarks/results/bucketing.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seq2seq.core.audio import FeatureConfig
from seq2seq.core.text import CharTokenizer
from seq2seq.data.datasets import ASRDataset, collate_asr
from seq2seq.data.manifest import read_manifest
from seq2seq.data.sampler import BucketBatchSampler

RESULTS = Path(__file__).parent / "results" / "bucketing.json"
ROOT = Path(__file__).resolve().parents[1]


def random_batches(lengths: list[int], max_frames: int, seed: int) -> list[list[int]]:
    """Baseline: utterances in random order, cut greedily under the same padded-frame budget."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    batches, current, longest = [], [], 0
    for index in order:
        grown = max(longest, lengths[index])
        if current and (len(current) + 1) * grown > max_frames:
            batches.append(current)
            current, grown = [], lengths[index]
        current.append(index)
        longest = grown
    return batches + ([current] if current else [])


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded


def throughput(dataset: ASRDataset, batches: list[list[int]], num_workers: int) -> float:
    """Utterances per second through a DataLoader (audio read + log-Mel + collate)."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_asr, num_workers=num_workers)
    start = time.perf_counter()
    count = sum(batch.features.shape[0] for batch in loader)
    return count / (time.perf_counter() - start)


def training_throughput(
    dataset: ASRDataset, tokenizer: CharTokenizer, schemes: dict[str, list[list[int]]], steps: int
) -> dict[str, float]:
    """Real frames per second of training steps on each scheme's first ``steps`` batches."""
    import dataclasses

    from seq2seq.experiments import load_experiment
    from seq2seq.training.asr_module import ASRTask
    from seq2seq.training.optim import build_optimizer

    experiment = load_experiment(ROOT / "configs/asr/small.yaml")
    experiment = dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, vocab_size=tokenizer.vocab_size)
    )
    torch.manual_seed(0)
    task = ASRTask(experiment, tokenizer, "tokenizer").train()
    optimizer = build_optimizer(task.model, experiment.optim)["optimizer"]
    batches = {
        name: [collate_asr([dataset[i] for i in b]) for b in bs[: steps + 1]] for name, bs in schemes.items()
    }
    seconds, frames = dict.fromkeys(schemes, 0.0), dict.fromkeys(schemes, 0)
    for step in range(steps + 1):  # step 0 warms up (allocator, kernel choice) and is not counted
        for name in schemes:
            batch = batches[name][step % len(batches[name])]
            start = time.perf_counter()
            task.losses(batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step:
                seconds[name] += time.perf_counter() - start
                frames[name] += int(batch.feature_lengths.sum())
    return {name: frames[name] / seconds[name] for name in schemes}


def measure(
    manifest: Path, max_frames: int, num_workers: int, seed: int, cache_dir: Path, train_batches: int
) -> dict:
    utterances, problems = read_manifest(manifest)
    if problems:
        print(f"{len(problems)} bad manifest lines skipped")
    config = FeatureConfig()
    tokenizer = CharTokenizer.build(u.text for u in utterances)
    dataset = ASRDataset(utterances, tokenizer, config)
    lengths = dataset.num_frames
    schemes = {
        "bucketed": list(BucketBatchSampler(lengths, max_frames, seed=seed)),
        "random": random_batches(lengths, max_frames, seed),
    }
    rows = {}
    for name, batches in schemes.items():
        rows[name] = {
            "batches": len(batches),
            "mean_batch_size": round(len(lengths) / len(batches), 2),
            "padding_fraction": round(padding_fraction(batches, lengths), 4),
            "utterances_per_s": round(throughput(dataset, batches, num_workers), 1),
        }
    cached = ASRDataset(
        utterances, tokenizer, config, cache_features=True, cache_dir=manifest.parent / "cache"
    )
    cached.features.build(num_workers)
    rows["bucketed_cached"] = dict(rows["bucketed"])
    rows["bucketed_cached"]["utterances_per_s"] = round(
        throughput(cached, schemes["bucketed"], num_workers), 1
    )
    if train_batches:
        for name, rate in training_throughput(cached, tokenizer, schemes, train_batches).items():
            rows[name]["train_real_frames_per_s"] = round(rate, 1)
    sweep = {
        str(budget): {
            "bucketed": round(
                padding_fraction(list(BucketBatchSampler(lengths, budget, seed=seed)), lengths), 4
            ),
            "random": round(padding_fraction(random_batches(lengths, budget, seed), lengths), 4),
        }
        for budget in (5000, 10000, 20000, 40000)
    }
    return {
        "manifest": str(manifest),
        "utterances": len(lengths),
        "hours": round(sum(u.duration for u in utterances) / 3600, 3),
        "max_frames": max_frames,
        "num_workers": num_workers,
        "torch_threads": torch.get_num_threads(),
        "results": rows,
        "padding_by_budget": sweep,
    }


def print_table(report: dict) -> None:
    hours, budget = report["hours"], report["max_frames"]
    print(f"{report['utterances']} utterances ({hours} h), budget {budget} padded frames")
    print(f"{'scheme':<16} {'batches':>8} {'mean B':>8} {'padding':>9} {'utt/s':>8} {'train frames/s':>15}")
    for name, row in report["results"].items():
        print(
            f"{name:<16} {row['batches']:>8} {row['mean_batch_size']:>8} "
            f"{row['padding_fraction']:>9.1%} {row['utterances_per_s']:>8} "
            f"{row.get('train_real_frames_per_s', float('nan')):>15}"
        )
    print("padding by budget: " + ", ".join(
        f"{b}: {p['bucketed']:.1%} vs {p['random']:.1%}" for b, p in report["padding_by_budget"].items()
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--manifest", type=Path, help="ASR manifest (default: a fresh small synthetic corpus)"
    )
    parser.add_argument("--max-frames", type=int, default=20000, help="padded frames per batch")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--num-utterances", type=int, default=600, help="size of the synthetic corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    parser.add_argument(
        "--train-batches", type=int, default=8, help="timed training steps per scheme (0: none)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest
        if manifest is None:
            from seq2seq.data.synthetic.corpus import prepare_synthetic

            paths = prepare_synthetic(Path(tmp) / "synthetic", num_train=args.num_utterances, num_dev=0,
                                      num_test=0, num_tts=0)  # fmt: skip
            manifest = paths["train"]
        report = measure(
            manifest, args.max_frames, args.num_workers, args.seed, Path(tmp) / "cache", args.train_batches
        )
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    assert report["results"]["bucketed"]["padding_fraction"] <= 0.10, "bucketed padding above 10%"
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
