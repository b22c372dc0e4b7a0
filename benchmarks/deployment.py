"""Deployment speed: PyTorch fp32 / int8 against onnxruntime fp32 / int8, batch 1 and batch 8.

Workload: the reference model and batch of ``benchmarks/decoding.py`` (encoder 12 layers, decoder 6,
d_model 256, vocabulary 5000, 8 random utterances of 3-8 s, EOS pushed down so every hypothesis runs to
``max_length_ratio`` × encoder frames: 15-40 tokens), joint beam search, beam 10, CTC weight 0.3. The
ONNX graphs are exported and quantized here (``seq2seq.inference.onnx_export`` / ``quantization``);
all four engines run the same ``BeamSearch``. Batch 1 decodes each utterance alone (the latency case);
batch 8 decodes them together. Ratios are within this one run.

Usage: ``python benchmarks/deployment.py [--quick]``; prints a table and writes
``benchmarks/results/deployment.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import timed
from decoding import build_model, make_batch

from seq2seq.decoding import DecodingConfig, decode_batch
from seq2seq.inference.onnx_engine import OnnxASR
from seq2seq.inference.onnx_export import export_asr
from seq2seq.inference.quantization import quantize_onnx, quantize_torch


class TorchEngine:
    def __init__(self, model):
        self.model = model

    def decode(self, features, lengths, config):
        return decode_batch(self.model, features, lengths, config)


def engines(model, directory: Path, threads: int) -> dict[str, object]:
    fp32 = export_asr(model, directory / "fp32")
    quantize_onnx(fp32, directory / "int8")
    return {
        "torch fp32": TorchEngine(model),
        "torch int8": TorchEngine(quantize_torch(copy.deepcopy(model))),
        "onnxruntime fp32": OnnxASR(directory / "fp32", threads),
        "onnxruntime int8": OnnxASR(directory / "int8", threads),
    }


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
    )


def print_table(rows: dict[str, dict], batch: int) -> None:
    base = rows["torch fp32"]
    print(
        f"{'engine':<18}{'b1 s/utt':>10}{'b1 x':>7}{f'b{batch} s/utt':>11}{f'b{batch} x':>7}{'b1 CPU s':>10}"
    )
    for name, r in rows.items():
        b1, bb = r["batch1_seconds_per_utterance"], r["batch_seconds_per_utterance"]
        print(
            f"{name:<18}{b1:>10.3f}{base['batch1_seconds_per_utterance'] / b1:>7.2f}{bb:>11.3f}"
            f"{base['batch_seconds_per_utterance'] / bb:>7.2f}{r['batch1_cpu_seconds_per_utterance']:>10.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 utterances")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--max-length-ratio", type=float, default=0.2, help="output tokens per encoder frame")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/deployment.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(5000)
    features, lengths = make_batch(2 if args.quick else 8, 300, 800, seed=0)
    config = DecodingConfig(beam_size=args.beam_size, ctc_weight=0.3, max_length_ratio=args.max_length_ratio)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        rows = {
            name: measure(e, features, lengths, config)
            for name, e in engines(model, Path(directory), args.threads).items()
        }
    same = {name: r["tokens"] == rows["torch fp32"]["tokens"] for name, r in rows.items()}
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
