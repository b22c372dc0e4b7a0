"""Tables and plots of the normalization study, mean ± 95 % t interval over seeds.

Files written to the study folder: ``results.json`` (per seed rows and per run aggregates), ``results.csv``
(per seed), ``table.md`` (per run, mean ± interval), ``curves.csv`` (every logged metric), ``probes.csv``
(every probe's scalars), ``study.png`` (final metrics), ``analysis-<comparison>.png`` (each probe
measurement over training: ICS l2 and 1 - cos, loss band, gradient predictiveness, beta-smoothness, and the
training loss; one figure per comparison: the grid's pre-norm runs, its post-norm runs, warm-up, features,
convolution norms) and ``findings.md`` / ``findings.json`` (``findings.py``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from findings import write_findings
from intervals import format_ci, mean_ci

from seq2seq.training.landscape import summary

BATCH_STATISTIC = ("batch", "power", "batch_renorm")
PROBE_KEYS = ("ics_l2_mean", "ics_cos_mean", "loss_band", "grad_change_max", "beta_smoothness")
PROBE_TITLES = {
    "ics_l2_mean": "ICS: ||G - G'|| (layer mean)",
    "ics_cos_mean": "ICS: cos(G, G') (layer mean)",
    "loss_band": "loss band (max - min over steps)",
    "grad_change_max": "gradient predictiveness: max ||g - g'||",
    "beta_smoothness": "effective beta-smoothness",
    "train_loss": "training loss",
}
# (column, key, digits) of table.md; every cell is mean ± 95 % t interval over the seeds
COLUMNS = (
    ("val loss", "val_loss", 3),
    ("val CER", "val_cer", 3),
    ("train loss, mean over run", "train_loss_mean", 3),
    ("ICS l2", "ics_l2_mean", 3),
    ("ICS cos", "ics_cos_mean", 6),
    ("loss band", "loss_band", 2),
    ("grad change", "grad_change_max", 3),
    ("beta", "beta_smoothness", 3),
    ("beta, first third", "beta_smoothness_early", 3),
    ("(1/d)|mu_B-mu|", "norm_stats_mean_gap_mean", 2),
    ("(1/d)|s2_B-s2|", "norm_stats_var_gap_mean", 2),
    ("probe / step time", "probe_cost_steps", 2),
)


def uses_batch_statistics(run) -> bool:
    return any(v in BATCH_STATISTIC for k, v in run.overrides.items() if k.endswith("norm.kind"))


def read_probes(run_dir: Path) -> list[dict]:
    """Every probe of a run as scalars (layer means), with step, seconds and step time."""
    path = run_dir / "analysis" / "probes.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        {"step": r["step"], **summary(r), "train_step_seconds": r.get("train_step_seconds")} for r in records
    ]


def probe_metrics(probes: list[dict]) -> dict[str, float]:
    """Means over the run's probes, beta also over its first third, and the probe's cost in steps."""
    if not probes:
        return {}
    keys = {k for p in probes for k, v in p.items() if isinstance(v, float)} - {"train_step_seconds"}
    metrics = {k: sum(p[k] for p in probes if k in p) / sum(k in p for p in probes) for k in keys}
    early = probes[: max(1, len(probes) // 3)]
    metrics["beta_smoothness_early"] = sum(p["beta_smoothness"] for p in early) / len(early)
    costs = [p["seconds"] / p["train_step_seconds"] for p in probes if p.get("train_step_seconds")]
    if costs:
        metrics["probe_cost_steps"] = sum(costs) / len(costs)
    return metrics


def collect(out: Path, runs, seeds, final_metrics: Callable, read_curves: Callable, norm_mode_gap: Callable):
    rows, curves, probes = [], [], []
    for run in runs:
        for seed in seeds:
            run_dir = out / run.name / f"seed{seed}"
            if not (run_dir / "done.json").is_file():
                continue
            run_curves = read_curves(run_dir)
            run_probes = read_probes(run_dir)
            curves += [{"run": run.name, "seed": seed, **r} for r in run_curves]
            probes += [{"run": run.name, "seed": seed, **p} for p in run_probes]
            train = [float(r["train_loss"]) for r in run_curves if "train_loss" in r]
            row = {
                "run": run.name,
                "group": run.group,
                "seed": seed,
                **final_metrics(run_curves),
                "train_loss_mean": sum(train) / len(train) if train else math.nan,
                **probe_metrics(run_probes),
                "train_seconds": json.loads((run_dir / "done.json").read_text())["seconds"],
            }
            if uses_batch_statistics(run):
                row.update(norm_mode_gap(run_dir))
            rows.append(row)
    return rows, curves, probes


def aggregate(rows: list[dict]) -> list[dict]:
    """Per run: for every numeric metric, mean, 95 % half-width and number of seeds."""
    result = []
    for name in dict.fromkeys(r["run"] for r in rows):
        seeds = [r for r in rows if r["run"] == name]
        keys = [k for k in dict.fromkeys(k for r in seeds for k in r) if k not in ("run", "group", "seed")]
        entry = {"run": name, "group": seeds[0]["group"], "seeds": len(seeds)}
        for key in keys:
            mean, half, n = mean_ci([r.get(key, math.nan) for r in seeds])
            entry[key] = {"mean": mean, "ci95": half, "n": n}
        result.append(entry)
    return result


def markdown_table(rows: list[dict]) -> str:
    shown = [(title, key, digits) for title, key, digits in COLUMNS if any(key in r for r in rows)]
    lines = [
        "| run | seeds | " + " | ".join(t for t, _, _ in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for name in dict.fromkeys(r["run"] for r in rows):
        seeds = [r for r in rows if r["run"] == name]
        cells = [format_ci([r.get(key, math.nan) for r in seeds], digits) for _, key, digits in shown]
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def seed_band(points: list[tuple[int, int, float]]) -> tuple[list[int], list[float], list[float]]:
    """(step, seed, value) -> steps, mean over seeds, 95 % half-width (0 where one seed)."""
    steps = sorted({s for s, _, _ in points})
    means, halves = [], []
    for step in steps:
        mean, half, _ = mean_ci([v for s, _, v in points if s == step])
        means.append(mean)
        halves.append(0.0 if math.isnan(half) else half)
    return steps, means, halves


def figure_groups(runs) -> dict[str, list[str]]:
    """One figure per comparison, so that each has a readable number of curves.

    The grid splits by placement; every other group is drawn with the runs it is compared against.
    """
    groups: dict[str, list[str]] = {}
    for run in runs:
        label = f"grid_{run.name.rsplit('-', 1)[1]}" if run.group == "grid" else run.group
        groups.setdefault(label, []).append(run.name)
    references = {"warmup": ["layer-pre", "layer-post", "batch-post"]}
    names = {run.name for run in runs}
    return {
        label: [r for r in references.get(label, ["layer-pre"]) if r in names and r not in members] + members
        if not label.startswith("grid")
        else members
        for label, members in groups.items()
    }


def plot_curves(path: Path, names: list[str], curves: list[dict], probes: list[dict]) -> None:
    """Each probe measurement and the training loss over steps, per run: seed mean and 95 % band.

    The ICS cosine is drawn as 1 - cos (it is within 1e-4 of 1 everywhere); the training loss is averaged
    over bins of 50 steps.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for ax, key in zip(axes.flat, (*PROBE_KEYS, "train_loss")):
        source = curves if key == "train_loss" else probes
        for name in names:
            points = [
                (int(float(r["step"])), r["seed"], float(r[key]))
                for r in source
                if r["run"] == name and r.get(key) not in (None, "")
            ]
            if key == "ics_cos_mean":
                points = [(s, seed, 1.0 - v) for s, seed, v in points]
            if key == "train_loss":
                points = [(s // 50 * 50 + 25, seed, v) for s, seed, v in points]
            if not points:
                continue
            steps, means, halves = seed_band(points)
            ax.plot(steps, means, label=name)
            ax.fill_between(
                steps,
                [m - h for m, h in zip(means, halves)],
                [m + h for m, h in zip(means, halves)],
                alpha=0.15,
            )
        title = "ICS: 1 - cos(G, G') (layer mean)" if key == "ics_cos_mean" else PROBE_TITLES[key]
        ax.set(title=title, xlabel="step")
        if key != "train_loss":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_final(path: Path, aggregates: list[dict], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(aggregates) + 2))
    names = [a["run"] for a in aggregates]
    for ax, key in zip(axes, ("val_loss", metric)):
        means = [a.get(key, {}).get("mean", math.nan) for a in aggregates]
        halves = [a.get(key, {}).get("ci95", math.nan) for a in aggregates]
        ax.barh(names, means, xerr=[0.0 if math.isnan(h) else h for h in halves])
        ax.set(title=f"final {key} (mean ± 95 % t interval over seeds)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def write_report(
    out: Path, runs, seeds, final_metrics, read_curves, norm_mode_gap, metric: str = "val_cer"
) -> None:
    rows, curves, probes = collect(out, runs, seeds, final_metrics, read_curves, norm_mode_gap)
    if not rows:
        raise SystemExit(f"{out}: no finished runs to report")
    aggregates = aggregate(rows)
    (out / "results.json").write_text(json.dumps({"runs": aggregates, "seeds": rows}, indent=2) + "\n")
    write_csv(out / "results.csv", rows)
    write_csv(out / "curves.csv", curves)
    if probes:
        write_csv(out / "probes.csv", probes)
    table = markdown_table(rows)
    (out / "table.md").write_text(table)
    names = [a["run"] for a in aggregates]
    plot_final(out / "study.png", aggregates, metric)
    runs_done = [r for r in runs if r.name in names]
    figures = figure_groups(runs_done)
    for label, members in figures.items():
        plot_curves(out / f"analysis-{label}.png", members, curves, probes)
    write_findings(out, rows, curves, probes, runs_done)
    print(table)
    print(
        f"wrote {out}/results.json, results.csv, table.md, curves.csv, probes.csv, study.png,"
        f" analysis-{{{','.join(figures)}}}.png, findings.md, findings.json"
    )
