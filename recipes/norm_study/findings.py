"""The study's three questions (issue #17), and the Conformer's convolution norm (issue #15), in numbers.

Reads the per-seed rows, the curves and the probes that ``report.py`` collected and writes
``findings.md`` and ``findings.json``: every number the README's "What the measurements say" quotes.

- **ICS.** Does batch norm reduce internal covariate shift? ICS l2 and cos of each norm against none, at
  the same placement, mean ± 95 % t interval over seeds.
- **Smoothness vs speed.** Across the grid's configurations (seed means), the Spearman rank correlation
  of each landscape measurement with how fast the run trained (mean training loss over the run, the
  validation CER halfway and at the end), with a permutation p-value.
- **Warm-up.** Post-norm without warm-up against with it, and pre-norm, on the first third of the probes.
- **Features** and **convolution norms**: validation CER and smoothness against their reference runs.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

from intervals import format_ci, mean_ci

SMOOTHNESS = (
    "beta_smoothness",
    "beta_smoothness_early",
    "loss_band",
    "grad_change_max",
    "ics_l2_mean",
    "ics_1_minus_cos",
)
SPEED = ("train_loss_mean", "val_cer_mid", "val_cer")
EARLY = ("beta_smoothness", "loss_band", "grad_change_max")
# Without a norm, pre- and post-norm are the same network (x + f(x) either way): the same losses bit for
# bit, so the second would count one configuration twice in a rank correlation.
SAME_AS = {"none-post": "none-pre"}


def ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def spearman(x: list[float], y: list[float], permutations: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Rank correlation and its two-sided permutation p-value (no SciPy needed)."""
    rx, ry = ranks(x), ranks(y)
    rho = pearson(rx, ry)
    if math.isnan(rho):
        return rho, math.nan
    rng = random.Random(seed)
    shuffled = list(ry)
    extreme = 0
    for _ in range(permutations):
        rng.shuffle(shuffled)
        extreme += abs(pearson(rx, shuffled)) >= abs(rho) - 1e-12
    return rho, (extreme + 1) / (permutations + 1)


def per_seed(rows: list[dict], curves: list[dict], probes: list[dict]) -> dict[str, list[dict]]:
    """Rows by run, each with the mid-run validation CER, 1 - ICS cos, the norms' eval - train validation
    loss and the first third of its probes added."""
    mid: dict[tuple[str, str], float] = {}
    for row in curves:
        if row.get("val_cer") not in (None, ""):
            key = (row["run"], str(row["seed"]))
            mid.setdefault(key, float(row["val_cer"]))  # the first validation: halfway for 2 of them
    early: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for probe in probes:
        early[(probe["run"], str(probe["seed"]))].append(probe)
    result: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        key = (row["run"], str(row["seed"]))
        first = sorted(early.get(key, []), key=lambda p: float(p["step"]))
        first = first[: max(1, len(first) // 3)]
        extra = {"val_cer_mid": mid.get(key, math.nan)}
        if "ics_cos_mean" in row:  # cos is 1 - O(1e-5) everywhere: its distance from 1 is what differs
            extra["ics_1_minus_cos"] = 1.0 - float(row["ics_cos_mean"])
        if "val_loss_norms_eval" in row and "val_loss_norms_train" in row:
            gap = float(row["val_loss_norms_eval"]) - float(row["val_loss_norms_train"])
            extra["val_loss_norms_gap"] = gap
        for name in EARLY:
            values = [float(p[name]) for p in first if p.get(name) not in (None, "")]
            extra[f"{name}_first_third"] = sum(values) / len(values) if values else math.nan
        result[row["run"]].append({**row, **extra})
    return result


def cell(runs: dict[str, list[dict]], name: str, key: str, digits: int = 3) -> str:
    return format_ci([float(r.get(key, math.nan)) for r in runs.get(name, [])], digits) or "—"


def mean(runs: dict[str, list[dict]], name: str, key: str) -> float:
    return mean_ci([float(r.get(key, math.nan)) for r in runs.get(name, [])])[0]


def table(runs: dict[str, list[dict]], names: list[str], keys: list[tuple[str, str]]) -> list[str]:
    present = [n for n in names if n in runs]
    lines = ["| run | seeds | " + " | ".join(t for t, _ in keys) + " |", "|---|---|" + "---|" * len(keys)]
    lines += [
        f"| {n} | {len(runs[n])} | " + " | ".join(cell(runs, n, k) for _, k in keys) + " |" for n in present
    ]
    return lines


def ics_section(runs: dict[str, list[dict]], norms: list[str]) -> tuple[list[str], dict]:
    keys = [("ICS l2", "ics_l2_mean"), ("ICS 1 - cos", "ics_1_minus_cos"), ("val CER", "val_cer")]
    lines = ["## Does batch norm reduce internal covariate shift?", ""]
    ratios: dict[str, dict[str, float]] = {"ics_l2_mean": {}, "ics_1_minus_cos": {}}
    for placement in ("pre", "post"):
        lines += table(runs, [f"{n}-{placement}" for n in norms], keys) + [""]
        for key, found in ratios.items():
            none = mean(runs, f"none-{placement}", key)
            for norm in norms:
                value = mean(runs, f"{norm}-{placement}", key)
                if norm != "none" and math.isfinite(value) and math.isfinite(none) and none:
                    found[f"{norm}-{placement}"] = value / none
    for key, found in ratios.items():
        lines.append(
            f"{key} relative to no norm at the same placement: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in found.items())
        )
        lines.append("")
    return lines, {"ics_vs_none": ratios}


def correlation_section(runs: dict[str, list[dict]], grid: list[str]) -> tuple[list[str], dict]:
    names = [n for n in grid if n in runs and SAME_AS.get(n) not in runs]
    lines = [
        "## Does smoothness predict which configurations train faster?",
        "",
        f"Spearman rank correlation across {len(names)} configurations (seed means; "
        + ", ".join(f"{a} is {b}" for a, b in SAME_AS.items())
        + "); p: permutation test.",
        "Positive: the rougher the landscape (larger value), the slower the run (higher loss / CER).",
        "",
        "| measurement | " + " | ".join(SPEED) + " |",
        "|---|" + "---|" * len(SPEED),
    ]
    found = {}
    for measure in SMOOTHNESS:
        cells = []
        for speed in SPEED:
            pairs = [(mean(runs, n, measure), mean(runs, n, speed)) for n in names]
            pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
            if len(pairs) < 4:
                cells.append("—")
                continue
            rho, p = spearman([a for a, _ in pairs], [b for _, b in pairs])
            found[f"{measure}~{speed}"] = {"rho": rho, "p": p, "n": len(pairs)}
            cells.append(f"{rho:+.2f} (p {p:.3f})")
        lines.append(f"| {measure} | " + " | ".join(cells) + " |")
    return lines + [""], {"spearman": found}


def warmup_section(runs: dict[str, list[dict]]) -> tuple[list[str], dict]:
    keys = [(f"{k}, first third", f"{k}_first_third") for k in EARLY] + [("val CER", "val_cer")]
    lines = ["## Does post-norm without warm-up show a rough landscape early?", ""]
    names = [f"{n}-{v}" for n in ("layer", "batch") for v in ("pre", "post", "post-nowarmup")]
    lines += table(runs, names, keys) + [""]
    found = {n: {k: mean(runs, n, k) for _, k in keys} for n in names if n in runs}
    return lines, {"warmup": found}


def grouped_section(runs: dict[str, list[dict]], title: str, names: list[str]) -> list[str]:
    keys = [
        ("val CER", "val_cer"),
        ("val CER halfway", "val_cer_mid"),
        ("train loss, mean", "train_loss_mean"),
        ("beta", "beta_smoothness"),
        ("loss band", "loss_band"),
        ("eval - train val loss", "val_loss_norms_gap"),
    ]
    return [f"## {title}", ""] + table(runs, names, keys) + [""]


def write_findings(out: Path, rows: list[dict], curves: list[dict], probes: list[dict], runs_planned) -> None:
    runs = per_seed(rows, curves, probes)
    grid = [r.name for r in runs_planned if r.group == "grid"]
    norms = dict.fromkeys(name.rsplit("-", 1)[0] for name in grid)
    lines = ["# Findings (written by report.py from this folder's runs)", ""]
    sections = [ics_section(runs, list(norms)), correlation_section(runs, grid), warmup_section(runs)]
    data: dict = {}
    for section_lines, section_data in sections:
        lines += section_lines
        data |= section_data
    features = ["layer-pre"] + [r.name for r in runs_planned if r.group == "features"]
    lines += grouped_section(runs, "Feature normalization", features)
    conv = [r.name for r in runs_planned if r.group == "conv_norm"]
    if conv:  # a Transformer study's extra
        lines += grouped_section(runs, "Conformer convolution-module norm (layer norm, pre, elsewhere)", conv)
    (out / "findings.md").write_text("\n".join(lines))
    (out / "findings.json").write_text(json.dumps(data, indent=2) + "\n")
