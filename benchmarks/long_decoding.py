"""Decoding cost against duration: joint CTC/attention beam search with and without the CTC window.

Without a window the CTC prefix score sums over every encoder frame at every output step, so decoding
grows with the square of the duration; with ``ctc_window`` it reads a fixed number of frames per step.
Workload: ``decoding.py``'s random-init model (12 + 6 layers, d_model 256, vocabulary 5000), one
utterance of 5, 30 and 120 s (4x subsampling: 125, 750, 3000 encoder frames), beam 10, CTC weight 0.3,
every hypothesis running to ``max_length_ratio`` × frames tokens (EOS pushed down). The encoder runs once
per duration and is timed apart; the table times the search alone, and the attention-only search (CTC
weight 0) of the same length as the floor: the decoder's cross-attention also reads every frame.

Usage: ``python benchmarks/long_decoding.py [--quick] [--windows 0 50]``; prints a table and writes
``benchmarks/results/long_decoding.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import timed
from decoding import FRAMES_PER_SECOND, build_model, make_batch

from seq2seq.decoding import BeamSearch, DecodingConfig, build_scorers


@torch.inference_mode()
def measure(model, seconds: float, windows: list[int], ratio: float) -> list[dict]:
    frames = int(seconds * FRAMES_PER_SECOND)
    features, lengths = make_batch(1, frames, frames, seed=0)
    encode_s, _, (memory, memory_lengths) = timed(lambda: model.encode(features, lengths))
    rows, reference = [], None
    for ctc_weight, window in [(0.0, 0)] + [(0.3, w) for w in windows]:  # attention alone: the floor
        config = DecodingConfig(
            beam_size=10, ctc_weight=ctc_weight, max_length_ratio=ratio, ctc_window=window
        )
        search = BeamSearch(*build_scorers(model, config), config)
        wall, cpu, hyps = timed(lambda s=search: s(memory, memory_lengths, model.config.vocab_size))
        tokens = hyps[0][0].tokens
        reference = tokens if reference is None and ctc_weight else reference
        rows.append(
            dict(
                seconds_audio=seconds,
                encoder_frames=int(memory_lengths[0]),
                ctc_weight=ctc_weight,
                ctc_window=window,
                tokens=len(tokens),
                encode_seconds=encode_s,
                search_seconds=wall,
                search_cpu_seconds=cpu,
                ms_per_token=1e3 * wall / max(len(tokens), 1),
                same_as_first=tokens == reference,
            )
        )
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'audio s':>8}{'frames':>8}{'ctc':>5}{'window':>8}{'tokens':>8}{'search s':>10}{'CPU s':>8}"
    print(header + f"{'ms/token':>10}")
    for r in rows:
        print(
            f"{r['seconds_audio']:>8.0f}{r['encoder_frames']:>8}{r['ctc_weight']:>5.1f}{r['ctc_window']:>8}{r['tokens']:>8}"
            f"{r['search_seconds']:>10.2f}{r['search_cpu_seconds']:>8.2f}{r['ms_per_token']:>10.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 and 30 s only")
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 50], help="ctc_window values (0: off)")
    parser.add_argument("--vocab-size", type=int, default=5000)
    parser.add_argument("--max-length-ratio", type=float, default=0.2, help="output tokens per encoder frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/long_decoding.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.vocab_size)
    rows = []
    for seconds in [5.0, 30.0] if args.quick else [5.0, 30.0, 120.0]:
        rows += measure(model, seconds, args.windows, args.max_length_ratio)
    print_table(rows)
    meta = dict(
        torch=torch.__version__,
        threads=args.threads,
        machine=platform.machine(),
        vocab_size=args.vocab_size,
        max_length_ratio=args.max_length_ratio,
        load_average=os.getloadavg(),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
