"""Single-utterance (batch-1) latency: CPU seconds per utterance and where they go, for one engine.

Workload: the reference model of ``benchmarks/decoding.py`` (random init, 12+6 layers, d_model 256,
vocabulary 5000, EOS pushed down: 0.2 tokens per encoder frame), one random utterance of ``--frames``
feature frames (500: 5 s, 124 encoder frames, 24 tokens per hypothesis), beam 10 + CTC 0.3. Times are
``time.process_time`` (CPU seconds of this process), which stay meaningful on a shared machine where
wall times do not; the hypotheses' lengths and a token checksum are printed so that runs of two code
versions can be checked to give the same result.

Usage: ``python benchmarks/latency_profile.py [--engine torch|onnx|onnx-int8] [--threads 1]
[--profile none|torch|python]``. ``torch`` prints ``torch.profiler``'s operator table, ``python``
cProfile's functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import machine
from decoding import build_model, make_batch

from seq2seq.decoding import DecodingConfig, decode_batch


def decoder(engine: str, model, directory: Path, threads: int):
    """A function decoding (features, lengths, config) with the chosen engine."""
    if engine == "torch":
        return lambda *args: decode_batch(model, *args)
    from seq2seq.inference.onnx_engine import OnnxASR
    from seq2seq.inference.onnx_export import export_asr
    from seq2seq.inference.quantization import quantize_onnx

    manifest = export_asr(model, directory / "fp32")
    if engine == "onnx-int8":
        manifest = quantize_onnx(manifest, directory / "int8")
    return OnnxASR(manifest.directory, threads).decode


def report(run, repeats: int, profile: str) -> None:
    """Time ``repeats`` runs, or profile one."""
    match profile:
        case "none":
            cpu = []
            for _ in range(repeats):
                start = time.process_time()
                run()
                cpu.append(time.process_time() - start)
            print("CPU s/utt, sorted:", " ".join(f"{t:.3f}" for t in sorted(cpu)))
        case "python":
            profiler = cProfile.Profile(time.process_time)
            profiler.runcall(run)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        case "torch":
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                run()
            table = prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40
            )
            print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="torch", choices=("torch", "onnx", "onnx-int8"))
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--frames", type=int, default=500, help="feature frames of the utterance (10 ms)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (--profile none)")
    parser.add_argument("--profile", default="none", choices=("none", "torch", "python"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(5000)
    features, lengths = make_batch(1, args.frames, args.frames, seed=0)
    config = DecodingConfig(beam_size=10, ctc_weight=0.3, max_length_ratio=0.2)
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        decode = decoder(args.engine, model, Path(directory), args.threads)
        tokens = decode(features, lengths, config)[0]  # warm-up
        print(f"{args.engine}, {args.threads} thread(s): {len(tokens)} tokens, checksum {sum(tokens)}")
        report(lambda: decode(features, lengths, config), args.repeats, args.profile)
    print({key: value for key, value in machine().items() if key in ("cpu", "cores", "load_average")})


if __name__ == "__main__":
    main()
