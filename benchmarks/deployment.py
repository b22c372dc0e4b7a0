"""Deployment speed: PyTorch fp32 / int8 against onnxruntime fp32 / int8, batch 1 and batch 8.

Workload: the reference model and batch of ``benchmarks/decoding.py`` (encoder 12 layers, decoder 6,
d_model 256, vocabulary 5000, 8 random utterances of 3-8 s, EOS pushed down so every hypothesis runs to
``max_length_ratio`` × encoder frames: 15-40 tokens), joint beam search, beam 10, CTC weight 0.3. The
ONNX graphs are exported and quantized here (``seq2seq.inference.onnx_export`` / ``quantization``);
all four engines run the same ``BeamSearch``. Batch 1 decodes each utterance alone (the latency case);
batch 8 decodes them together. For each, wall and CPU seconds per utterance (CPU seconds are the
steadier figure on a shared machine) and the speed-up over torch fp32; ratios are within this one run.
``--before`` adds torch fp32 and onnxruntime int8 as they ran before the batch-1 work, and variants
(see ``benchmarks/README.md``, Deployment).

Usage: ``python benchmarks/deployment.py [--quick] [--before]``; prints a table and writes
``benchmarks/results/deployment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import timed
from decoding import build_model, make_batch

from seq2seq.decoding import DecodingConfig, decode_batch
from seq2seq.inference import onnx_engine as onnx_engine_module
from seq2seq.inference.onnx_engine import OnnxASR
from seq2seq.inference.onnx_export import export_asr
from seq2seq.inference.quantization import quantize_onnx, quantize_torch
from seq2seq.nn import linear

STREAMED_ROWS = linear.STREAMED_ROWS


class TorchEngine:
    """``decode_batch`` on a PyTorch model; ``streamed=False`` turns ``streamed_linear``'s weight copy off
    (the code before it, for ``--before``)."""

    def __init__(self, model, streamed: bool = True):
        self.model, self.streamed = model, streamed

    def decode(self, features, lengths, config):
        linear.STREAMED_ROWS = STREAMED_ROWS if self.streamed else 0
        try:
            return decode_batch(self.model, features, lengths, config)
        finally:
            linear.STREAMED_ROWS = STREAMED_ROWS


def onnx_engine(
    directory: Path, threads: int, spinning: bool = False, step_threads: int | None = None
) -> OnnxASR:
    """Sessions opened with onnxruntime's thread spinning on (its default, ``--before``) or off."""
    onnx_engine_module.SPINNING = spinning
    try:
        return OnnxASR(directory, threads, step_threads)
    finally:
        onnx_engine_module.SPINNING = False


def engines(model, directory: Path, threads: int, before: bool) -> dict[str, object]:
    """The four engines; with ``before`` also torch fp32 and onnxruntime int8 as they were before the
    batch-1 work (no weight copy in few-row matmuls; every op type quantized, ConvInteger included,
    and spinning), torch int8 with the attention's query/key/value left float,
    and today's onnxruntime int8 with spinning on (whether sleeping costs latency on an idle machine)
    and, with several threads, with its decoder step on one thread (the encoder on ``threads``)."""
    fp32 = export_asr(model, directory / "fp32")
    quantize_onnx(fp32, directory / "int8")
    rows = {
        "torch fp32": TorchEngine(model),
        "torch int8": TorchEngine(quantize_torch(model)),  # a copy
        "onnxruntime fp32": onnx_engine(directory / "fp32", threads),
        "onnxruntime int8": onnx_engine(directory / "int8", threads),
    }
    if before:
        quantize_onnx(fp32, directory / "int8-all", ops=())
        rows["torch fp32 before"] = TorchEngine(model, streamed=False)
        rows["torch int8 unfused"] = TorchEngine(quantize_torch(model, fuse_attention=False))
        rows["ort int8 before"] = onnx_engine(directory / "int8-all", threads, spinning=True)
        rows["ort int8 spinning"] = onnx_engine(directory / "int8", threads, spinning=True)
    if before and threads > 1:
        rows["ort int8 step 1 th"] = onnx_engine(directory / "int8", threads, step_threads=1)
    return rows


def measure(engine, features, lengths, config: DecodingConfig) -> dict:
    """Seconds per utterance decoding each alone (batch 1) and all together (batch B)."""
    engine.decode(features[:1, :300], lengths[:1].clamp(max=300), config)  # warm-up
    alone = [
        timed(lambda i=i: engine.decode(features[i : i + 1, : lengths[i]], lengths[i : i + 1], config))
        for i in range(len(lengths))
    ]
    together = timed(lambda: engine.decode(features, lengths, config))
    batch = len(lengths)
    return dict(
        batch1_seconds_per_utterance=sum(t[0] for t in alone) / batch,
        batch1_cpu_seconds_per_utterance=sum(t[1] for t in alone) / batch,
        batch_seconds_per_utterance=together[0] / batch,
        batch_cpu_seconds_per_utterance=together[1] / batch,
        tokens=[len(t) for t in together[2]],
        batch1_tokens=[len(t[2][0]) for t in alone],
    )


def interleaved_rounds(engines: dict[str, object], rounds: int, features, lengths, config) -> dict[str, dict]:
    """:func:`measure` every engine once per round, in a fresh random order; per engine the median of
    each time over the rounds (and the rounds' raw figures)."""
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    order, names = random.Random(0), list(engines)
    for _ in range(rounds):
        order.shuffle(names)
        for name in names:
            runs[name].append(measure(engines[name], features, lengths, config))
    return {
        name: {
            **{key: statistics.median(r[key] for r in results) for _, key in COLUMNS},
            "tokens": results[0]["tokens"],
            "batch1_tokens": results[0]["batch1_tokens"],
            "rounds": results,
        }
        for name, results in runs.items()
    }


COLUMNS = (  # (heading, key): wall and CPU seconds per utterance at batch 1 and batch B
    ("b1 s/utt", "batch1_seconds_per_utterance"),
    ("b1 CPU s", "batch1_cpu_seconds_per_utterance"),
    ("bB s/utt", "batch_seconds_per_utterance"),
    ("bB CPU s", "batch_cpu_seconds_per_utterance"),
)


def print_table(rows: dict[str, dict], batch: int) -> None:
    """Each time column followed by the speed-up over torch fp32 in this run (``x``: its time / this)."""
    base = rows["torch fp32"]
    head = "".join(f"{title.replace('bB', f'b{batch}'):>10}{'x':>6}" for title, _ in COLUMNS)
    print(f"{'engine':<19}{head}")
    for name, r in rows.items():
        cells = "".join(f"{r[key]:>10.3f}{base[key] / r[key]:>6.2f}" for _, key in COLUMNS)
        print(f"{name:<19}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 utterances")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--max-length-ratio", type=float, default=0.2, help="output tokens per encoder frame")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time torch fp32 and onnxruntime int8 without the batch-1 work, and variants",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians are printed)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/deployment.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(5000)
    features, lengths = make_batch(2 if args.quick else 8, 300, 800, seed=0)
    config = DecodingConfig(beam_size=args.beam_size, ctc_weight=0.3, max_length_ratio=args.max_length_ratio)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        rows = interleaved_rounds(
            engines(model, Path(directory), args.threads, args.before), args.rounds, features, lengths, config
        )
    same = {
        name: r["tokens"] == rows["torch fp32"]["tokens"]
        and r["batch1_tokens"] == rows["torch fp32"]["batch1_tokens"]
        for name, r in rows.items()
    }
    print_table(rows, len(lengths))
    meta = dict(
        torch=torch.__version__,
        threads=args.threads,
        machine=platform.machine(),
        frames=lengths.tolist(),
        beam_size=args.beam_size,
        ctc_weight=0.3,
        max_length_ratio=args.max_length_ratio,
        quick=args.quick,
        rounds=args.rounds,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        cpus=os.cpu_count(),
    )
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(dict(meta=meta, engines=rows, same_lengths=same), indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
