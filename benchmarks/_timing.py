"""Timing helpers shared by the benchmarks: interleaved repeats, matmul peak rate, machine description.

On a shared machine absolute times drift with other people's load; the benchmarks therefore interleave
the variants they compare (a fresh random order each round), report medians, and take ratios within a
round. ``OMP_WAIT_POLICY=PASSIVE`` (set before torch is imported) keeps idle OpenMP threads from spinning.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu") -> tuple[float, float, object]:
    """(wall-clock seconds, process CPU seconds, result). CPU time is the steadier number on a shared
    machine: it does not count time spent waiting for a core.
    """
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def interleaved(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    budget_s: float,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, list[tuple[float, float]]]:
    """Run every variant once per round, in a fresh random order; stop after ``rounds`` rounds or when
    another round would pass ``budget_s`` (at least one round). Returns (wall, cpu) seconds per round.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    order, names = random.Random(seed), list(variants)
    start = time.perf_counter()
    for done in range(1, rounds + 1):
        order.shuffle(names)
        for name in names:
            times[name].append(timed(variants[name], device)[:2])
        if (time.perf_counter() - start) / done * (done + 1) > budget_s:
            break
    return times


def median_ratio(
    times: dict[str, list[tuple[float, float]]], name: str, reference: str, cpu: bool = False
) -> float:
    """Median over rounds of ``name``'s time divided by ``reference``'s time in the same round."""
    k = 1 if cpu else 0
    return statistics.median(a[k] / b[k] for a, b in zip(times[name], times[reference]))


def median(series: list[tuple[float, float]], cpu: bool = False) -> float:
    return statistics.median(t[1 if cpu else 0] for t in series)


def matmul_rate(
    device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5
) -> float:
    """Best measured FLOP/s of an ``n x n @ n x n`` matmul (``2 n^3`` FLOPs): the machine's peak for the
    dtype, under the current thread setting. The best of a few runs, since load only ever adds time.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, device)[0] for _ in range(repeats))
    return 2 * n**3 / best


def cpu_model_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    """What the numbers came from: CPU model, cores, torch, threads, load average, GPU when used."""
    info = dict(
        cpu=cpu_model_name(),
        cores=os.cpu_count(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        load_average=[round(x, 2) for x in os.getloadavg()],
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
    )
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def add_device_arguments(parser) -> None:
    """``--threads``, ``--device`` (cpu or cuda: bf16 autocast) and ``--compile`` (torch.compile)."""
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="cuda runs under bf16 autocast (untested without a GPU)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (GPU mode; on CPU the padding shortcuts step aside)",
    )


def parse_arguments(parser):
    """Parse, refusing ``--device cuda`` where no GPU is visible."""
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return args


def autocast(device: str):
    """bf16 autocast on CUDA; a no-op context on CPU, where float32 is the reference."""
    return (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )


def timed_main(parser, run: Callable, print_table: Callable, rounds: int, budget: float, out: Path) -> None:
    """The shared command line of the step benchmarks: ``--rounds``, ``--budget``, ``--out`` and the device
    options; runs ``run(args)``, prints its table and writes its JSON."""
    parser.add_argument("--rounds", type=int, default=rounds, help="most timed rounds")
    parser.add_argument("--budget", type=float, default=budget, help="stop starting rounds after this many s")
    parser.add_argument("--out", type=Path, default=out, help="where to write the JSON results")
    add_device_arguments(parser)
    args = parse_arguments(parser)
    result = run(args)
    print_table(result)
    write_json(args.out, result)


def count_flops(model, batches: list, loss: Callable) -> float:
    """Forward + backward FLOPs of ``loss(model, batch)`` (FlopCounterMode), summed over ``batches``."""
    from torch.utils.flop_counter import FlopCounterMode

    total = 0
    for batch in batches:
        counter = FlopCounterMode(display=False)
        with counter:
            loss(model, batch).backward()
        model.zero_grad(set_to_none=True)
        total += counter.get_total_flops()
    return float(total)
