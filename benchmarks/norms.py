"""Training-step cost of each norm kind in the Transformer encoder-decoder, relative to LayerNorm.

Times forward + backward of the encoder (12 layers) and decoder (6 layers), d_model 256, 4 heads, FFN 2048,
on a batch of 8 utterances of ~300 encoder frames (after subsampling) and ~40 decoder tokens with random
lengths, so the masked norms pay for their padding. Every norm uses pre placement. Repeats interleave the
kinds in a fresh random order each round and the ratio to LayerNorm is taken within a round, so load
drifting on a shared machine hits all kinds alike; the table reports medians over rounds.

Usage::

    python benchmarks/norms.py            # about 3 minutes on 2 CPU threads (rounds fit a time budget)
    python benchmarks/norms.py --quick    # smaller model and batch, well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning, so CPU time counts work, not waiting for a busy core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from seq2seq.nn.masking import lengths_to_mask
from seq2seq.nn.norms import NORM_KINDS, NormConfig
from seq2seq.nn.transformer import Decoder, Encoder, TransformerConfig

RESULTS = Path(__file__).resolve().parent / "results" / "norms.json"
SHAPES = {  # name: (encoder layers, decoder layers, batch, max encoder frames, max decoder tokens)
    "default": (12, 6, 8, 300, 40),
    "quick": (3, 2, 4, 100, 20),
}


def build(kind: str, enc_layers: int, dec_layers: int) -> tuple[Encoder, Decoder]:
    torch.manual_seed(0)

    def config(layers: int) -> TransformerConfig:
        return TransformerConfig(
            num_layers=layers,
            d_model=256,
            num_heads=4,
            ffn_dim=2048,
            dropout=0.1,
            norm=NormConfig(kind=kind),
            placement="pre",
        )

    return Encoder(config(enc_layers)).train(), Decoder(config(dec_layers)).train()


def make_batch(batch: int, frames: int, tokens: int, seed: int = 0):
    """Random inputs with lengths in [80%, 100%] of the maximum; padding filled with noise."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(int(0.8 * frames), frames + 1, (batch,), generator=g)
    tgt_len = torch.randint(int(0.75 * tokens), tokens + 1, (batch,), generator=g)
    src_len[0], tgt_len[0] = frames, tokens
    src = torch.randn(batch, frames, 256, generator=g)
    tgt = torch.randn(batch, tokens, 256, generator=g)
    return src, lengths_to_mask(src_len), tgt, lengths_to_mask(tgt_len)


def step(encoder: Encoder, decoder: Decoder, batch) -> tuple[float, float]:
    """One forward + backward; returns its wall time and this process's CPU time, in seconds.

    CPU time is the steadier measure on a shared machine: waiting for a core does not count.
    """
    src, src_mask, tgt, tgt_mask = batch
    start, start_cpu = time.perf_counter(), time.process_time()
    memory = encoder(src, src_mask)
    out = decoder(tgt, tgt_mask, memory, src_mask)
    loss = out[tgt_mask].square().mean() + memory[src_mask].square().mean()
    loss.backward()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    for p in (*encoder.parameters(), *decoder.parameters()):
        p.grad = None
    return elapsed, cpu


def run(shape: str, kinds: list[str], repeats: int, budget_s: float, threads: int) -> dict:
    """Time ``repeats`` interleaved rounds, or fewer when ``budget_s`` would be exceeded (at least one)."""
    torch.set_num_threads(threads)
    enc_layers, dec_layers, batch_size, frames, tokens = SHAPES[shape]
    batch = make_batch(batch_size, frames, tokens)
    models = {kind: build(kind, enc_layers, dec_layers) for kind in kinds}
    step(*models["layer"], batch)  # untimed: one-time costs (kernel selection, allocator) are per process
    wall: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = random.Random(0)
    start = time.perf_counter()
    while len(wall["layer"]) < repeats:
        round_order = kinds[:]
        order.shuffle(round_order)
        measured = {kind: step(*models[kind], batch) for kind in round_order}
        for kind in kinds:
            wall[kind].append(measured[kind][0])
            cpu[kind].append(measured[kind][1])
        rounds = len(wall["layer"])
        if (time.perf_counter() - start) / rounds * (rounds + 1) > budget_s:
            break

    def ratio(series: dict[str, list[float]], kind: str) -> float:
        """Median over rounds of the ratio to LayerNorm within the round."""
        return statistics.median(t / ref for t, ref in zip(series[kind], series["layer"]))

    rows = [
        {
            "norm": kind,
            "ms_per_step": 1000 * statistics.median(wall[kind]),
            "ratio_to_layer": ratio(wall, kind),
            "best_ms": 1000 * min(wall[kind]),
            "best_ratio": min(wall[kind]) / min(wall["layer"]),  # noise on a shared machine only adds time
            "cpu_ratio_to_layer": ratio(cpu, kind),
            "ms_all": [round(1000 * t, 1) for t in wall[kind]],
        }
        for kind in kinds
    ]
    return {
        "benchmark": "norms",
        "shape": shape,
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "d_model": 256,
        "heads": 4,
        "ffn_dim": 2048,
        "batch": batch_size,
        "max_frames": frames,
        "max_tokens": tokens,
        "placement": "pre",
        "rounds": len(wall["layer"]),
        "threads": threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }


def print_table(result: dict) -> None:
    print(
        f"{result['shape']}: {result['encoder_layers']}+{result['decoder_layers']} layers, "
        f"batch {result['batch']} x {result['max_frames']} frames / {result['max_tokens']} tokens, "
        f"{result['threads']} threads, median of {result['rounds']} interleaved rounds"
    )
    print(f"{'norm':<14}{'ms/step':>10}{'ratio':>8}{'best ms':>10}{'best ratio':>12}")
    for row in result["rows"]:
        print(
            f"{row['norm']:<14}{row['ms_per_step']:>10.1f}{row['ratio_to_layer']:>8.3f}"
            f"{row['best_ms']:>10.1f}{row['best_ratio']:>12.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller model and batch (under a minute)")
    parser.add_argument("--repeats", type=int, default=5, help="most timed rounds (each times every kind)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop starting rounds after this many seconds (default 130; 30 with --quick)",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(NORM_KINDS),
        choices=NORM_KINDS,
        help="norm kinds to time (layer is always included)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args()
    kinds = ["layer", *[k for k in args.kinds if k != "layer"]]
    budget = args.budget if args.budget is not None else (30.0 if args.quick else 130.0)
    result = run("quick" if args.quick else "default", kinds, args.repeats, budget, args.threads)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
