"""Single-utterance (batch-1) latency: CPU seconds per utterance and where they go, for one engine.

Workload: the reference model of ``benchmarks/decoding.py`` (random init, 12+6 layers, d_model 256,
vocabulary 5000, EOS pushed down: 0.2 tokens per encoder frame), one random utterance of ``--frames``
feature frames (500: 5 s, 124 encoder frames, 24 tokens per hypothesis), beam 10 + CTC 0.3. Times are
``time.process_time`` (CPU seconds of this process), which stay meaningful on a shared machine where
wall times do not; the hypotheses' lengths and a token checksum are printed so that runs of two code
versions can be checked to give the same result.

``--batch 8`` decodes the 8 utterances of ``benchmarks/deployment.py`` together instead (its batch-8
figure); times are then per utterance.

Usage: ``python benchmarks/latency_profile.py [--engine torch|torch-int8|onnx|onnx-int8] [--threads 1]
[--batch 1|8] [--profile none|torch|torch-ops|python]``. ``torch`` prints ``torch.profiler``'s table by
operator and input shapes, ``torch-ops`` by operator alone, ``python`` cProfile's functions by own time.
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
    from seq2seq.inference.quantization import quantize_onnx, quantize_torch

    if engine in ("torch", "torch-int8"):
        model = quantize_torch(model) if engine == "torch-int8" else model
        return lambda *args: decode_batch(model, *args)
    from seq2seq.inference.onnx_engine import OnnxASR
    from seq2seq.inference.onnx_export import export_asr

    manifest = export_asr(model, directory / "fp32")
    if engine == "onnx-int8":
        manifest = quantize_onnx(manifest, directory / "int8")
    return OnnxASR(manifest.directory, threads).decode


def report(run, repeats: int, profile: str, utterances: int = 1) -> None:
    """Time ``repeats`` runs (CPU seconds per utterance), or profile one."""
    match profile:
        case "none":
            cpu = []
            for _ in range(repeats):
                start = time.process_time()
                run()
                cpu.append((time.process_time() - start) / utterances)
            print("CPU s/utt, sorted:", " ".join(f"{t:.3f}" for t in sorted(cpu)))
        case "python":
            profiler = cProfile.Profile(time.process_time)
            profiler.runcall(run)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        case "torch" | "torch-ops":
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                run()
            table = prof.key_averages(group_by_input_shape=profile == "torch").table(
                sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40
            )
            print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="torch", choices=("torch", "torch-int8", "onnx", "onnx-int8"))
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--frames", type=int, default=500, help="feature frames of the utterance (10 ms)")
    parser.add_argument("--batch", type=int, default=1, choices=(1, 8), help="8: deployment.py's batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (--profile none)")
    parser.add_argument("--profile", default="none", choices=("none", "torch", "torch-ops", "python"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(5000)
    if args.batch == 1:
        features, lengths = make_batch(1, args.frames, args.frames, seed=0)
    else:  # deployment.py's workload
        features, lengths = make_batch(8, 300, 800, seed=0)
    config = DecodingConfig(beam_size=10, ctc_weight=0.3, max_length_ratio=0.2)
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        decode = decoder(args.engine, model, Path(directory), args.threads)
        hypotheses = decode(features, lengths, config)  # warm-up
        tokens = [len(h) for h in hypotheses]
        checksum = sum(sum(h) for h in hypotheses)
        print(f"{args.engine}, {args.threads} thread(s), batch {args.batch}: tokens {tokens}, sum {checksum}")
        report(lambda: decode(features, lengths, config), args.repeats, args.profile, len(lengths))
    print({key: value for key, value in machine().items() if key in ("cpu", "cores", "load_average")})


if __name__ == "__main__":
    main()
