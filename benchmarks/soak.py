"""Load test: transcribe a folder of many files (5% of them broken) twice, watching memory and speed.

Workload: ``--count`` generated files of 0.5-8 s (uniform), made of the demo corpus's speech when it is
there (clips joined and cut to length), else of tones; every 20th file is broken in one of five ways
(truncated, a header with no samples, text named ``.wav``, an image named ``.flac``, zero bytes). They are
transcribed in-process through :meth:`Transcriber.transcribe_sources`, ``--chunk`` files at a time, with
the package's own decoding settings; after each chunk the resident set (``VmRSS`` and its peak ``VmHWM``
from ``/proc/self/status``) and the chunk's throughput are recorded. The whole folder is transcribed
``--runs`` times in the same process.

Checks (printed as PASS/FAIL; exit status 1 if any fails): every good file has a transcript, every broken
file exactly one one-line error naming it; the resident set after warm-up (the first ``--warmup``
chunks) grows by at most ``--rss-bound-mb``; every run's output is byte-identical to the first;
throughput (audio seconds per CPU second) in the last quarter of the chunks is within 0.67-1.5x of the
first quarter after warm-up.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/soak.py [--count 1000] [--package DIR] [--chunk 50]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch  # noqa: E402  (after _timing sets OMP_WAIT_POLICY)
from _timing import machine, write_json

from seq2seq.inference.transcribe import Transcriber
from seq2seq.tasks import load_model_package

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path("/tmp/demo_tree/runs/demo")
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
RATE = 16000
BROKEN_EVERY = 20  # 5%
BROKEN_KINDS = ("truncated", "no samples", "text as .wav", "image as .flac", "zero bytes")


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB, from ``/proc/self/status``."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def speech_pool(corpus: Path | None, most: int = 300) -> list[np.ndarray]:
    """Waveforms of up to ``most`` corpus clips at 16 kHz (none: tones are used instead)."""
    if corpus is None or not corpus.is_dir():
        return []
    paths = sorted(corpus.rglob("*.wav"))[:most]
    clips = [soundfile.read(p, dtype="float32")[0] for p in paths]
    return [c for c in clips if c.ndim == 1 and len(c) > RATE // 4]


def good_wave(rng: random.Random, seconds: float, pool: list[np.ndarray]) -> np.ndarray:
    samples = int(seconds * RATE)
    if not pool:
        t = np.arange(samples) / RATE
        return (0.1 * np.sin(2 * np.pi * rng.uniform(120, 400) * t)).astype(np.float32)
    pieces, total = [], 0
    while total < samples:
        clip = pool[rng.randrange(len(pool))]
        pieces.append(clip)
        total += len(clip)
    return np.concatenate(pieces)[:samples] * rng.uniform(0.5, 1.0)


def broken_file(folder: Path, index: int, kind: str, good: Path) -> Path:
    """One broken file of ``kind``."""
    match kind:
        case "truncated":
            path, data = folder / f"{index:05d}.wav", good.read_bytes()[: good.stat().st_size // 2]
        case "no samples":
            path = folder / f"{index:05d}.wav"
            soundfile.write(path, np.zeros(0, np.float32), RATE)
            return path
        case "text as .wav":
            path, data = folder / f"{index:05d}.wav", b"this is not audio\n" * 50
        case "image as .flac":
            path, data = folder / f"{index:05d}.flac", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
        case _:
            path, data = folder / f"{index:05d}.wav", b""
    path.write_bytes(data)
    return path


def make_folder(
    folder: Path, count: int, seed: int, corpus: Path | None
) -> tuple[list[Path], dict[Path, str]]:
    """``count`` files: the good ones, and the broken ones with their kind."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, pool = random.Random(seed), speech_pool(corpus)
    good, broken = [], {}
    for index in range(count):
        if index % BROKEN_EVERY == BROKEN_EVERY - 1 and good:
            kind = BROKEN_KINDS[(index // BROKEN_EVERY) % len(BROKEN_KINDS)]
            broken[broken_file(folder, index, kind, good[-1])] = kind
            continue
        path = folder / f"{index:05d}.wav"
        soundfile.write(path, good_wave(rng, rng.uniform(0.5, 8.0), pool), RATE, subtype="PCM_16")
        good.append(path)
    return good, broken


def transcribe_run(transcriber: Transcriber, files: list[Path], chunk: int, batch: int, run: int) -> tuple:
    """Lines (``path<TAB>text`` or ``error: ...``) and one record per chunk."""
    lines, chunks = [], []
    for start in range(0, len(files), chunk):
        part = [str(p) for p in files[start : start + chunk]]
        wall, cpu = time.perf_counter(), time.process_time()
        results = transcriber.transcribe_sources([(p, 0.0, None) for p in part], batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        audio = sum(soundfile.info(p).duration for p, (_, error) in zip(part, results) if error is None)
        lines += [f"error: {error}" if error else f"{p}\t{text}" for p, (text, error) in zip(part, results)]
        rss, hwm = memory_mb()
        chunks.append(
            dict(run=run, first=start, files=len(part), audio_s=audio, wall_s=wall, cpu_s=cpu,
                 files_per_s=len(part) / wall, audio_per_cpu_s=audio / cpu, rss_mb=rss, hwm_mb=hwm)
        )  # fmt: skip
        print(_row(chunks[-1]), flush=True)
    return lines, chunks


def _row(c: dict) -> str:
    return (
        f"{c['run']:>3}{c['first']:>7}{c['files']:>6}{c['audio_s']:>9.1f}{c['wall_s']:>8.2f}{c['cpu_s']:>8.2f}"
        f"{c['files_per_s']:>9.2f}{c['audio_per_cpu_s']:>10.1f}{c['rss_mb']:>9.1f}{c['hwm_mb']:>9.1f}"
    )


HEADER = f"{'run':>3}{'first':>7}{'files':>6}{'audio s':>9}{'wall s':>8}{'CPU s':>8}{'files/s':>9}"
HEADER += f"{'audio/CPU':>10}{'RSS MB':>9}{'peak MB':>9}"


def check(outputs: list[list[str]], chunks: list[dict], good, broken, args) -> dict[str, tuple[bool, str]]:
    """The soak's claims, each (passed, what was seen)."""
    first = outputs[0]
    by_path = {line.split("\t")[0]: line for line in first if not line.startswith("error: ")}
    errors = [line for line in first if line.startswith("error: ")]
    named = {path: sum(str(path) in line for line in errors) for path in broken}
    warm = chunks[args.warmup :] or chunks
    rss = [c["rss_mb"] for c in warm]  # after each chunk, from the first one past warm-up
    peak = chunks[-1]["hwm_mb"]
    quarter = max(1, len(warm) // 4)
    early = statistics.median(c["audio_per_cpu_s"] for c in warm[:quarter])
    late = statistics.median(c["audio_per_cpu_s"] for c in warm[-quarter:])
    digests = [hashlib.sha256("\n".join(o).encode()).hexdigest() for o in outputs]
    return {
        "every good file has a transcript": (
            all(str(p) in by_path for p in good),
            f"{sum(str(p) in by_path for p in good)} of {len(good)}",
        ),
        "every broken file has one one-line error": (
            len(errors) == len(broken) and all(n == 1 for n in named.values()),
            f"{len(errors)} error lines for {len(broken)} broken files",
        ),
        f"RSS after warm-up grows <= {args.rss_bound_mb:g} MB": (
            max(rss) - rss[0] <= args.rss_bound_mb,
            f"{rss[0]:.1f} -> max {max(rss):.1f} MB (+{max(rss) - rss[0]:.1f}), peak {peak:.1f} MB",
        ),
        "every run's output is byte-identical": (
            len(set(digests)) == 1,
            f"sha256 {digests[0][:16]} x{len(digests)}",
        ),
        "throughput steady (last/first quarter 0.67-1.5x)": (
            0.67 <= late / early <= 1.5,
            f"{early:.1f} -> {late:.1f} audio s per CPU s ({late / early:.2f}x)",
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="files in the folder (5%% broken)")
    parser.add_argument("--package", type=Path, default=DEMO / "asr_model", help="ASR model package")
    parser.add_argument("--corpus", type=Path, default=DEMO / "data", help="speech clips to build files from")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/soak-audio"), help="where files are made")
    parser.add_argument("--chunk", type=int, default=50, help="files per transcribe_sources call")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together")
    parser.add_argument("--runs", type=int, default=2, help="times the folder is transcribed")
    parser.add_argument("--warmup", type=int, default=2, help="chunks before memory and speed are judged")
    parser.add_argument("--rss-bound-mb", type=float, default=50.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.package / "config.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from support import tiny_asr_package  # a random tiny package when the demo one is absent

        args.package = tiny_asr_package(args.folder.parent / f"{args.folder.name}-package")
    transcriber = Transcriber(load_model_package(args.package))
    good, broken = make_folder(args.folder, args.count, args.seed, args.corpus)
    files = sorted([*good, *broken])
    print(f"{len(files)} files ({len(broken)} broken), package {args.package}, {transcriber.config}")
    print(HEADER)
    outputs, chunks = [], []
    for run in range(args.runs):
        lines, records = transcribe_run(transcriber, files, args.chunk, args.batch_size, run)
        outputs.append(lines)
        chunks += records
    results = check(outputs, chunks, good, broken, args)
    for name, (passed, seen) in results.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {seen}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.with_suffix(".txt")).write_text("\n".join(outputs[0]) + "\n")
    write_json(
        args.out,
        dict(
            machine=machine(),
            args={k: str(v) for k, v in vars(args).items()},
            files=len(files),
            broken={str(k): v for k, v in broken.items()},
            audio_seconds=sum(c["audio_s"] for c in chunks) / args.runs,
            checks={name: dict(passed=p, seen=s) for name, (p, s) in results.items()},
            chunks=chunks,
        ),
    )
    sys.exit(0 if all(p for p, _ in results.values()) else 1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
