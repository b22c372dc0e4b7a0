"""Tables and plot of the normalization study: results.json, results.csv, curves.csv, study.png."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

BATCH_STATISTIC = ("batch", "power", "batch_renorm")


def uses_batch_statistics(run) -> bool:
    return any(v in BATCH_STATISTIC for k, v in run.overrides.items() if k.endswith("norm.kind"))


def collect(out: Path, runs, final_metrics: Callable, read_curves: Callable, norm_mode_gap: Callable):
    rows, curves = [], []
    for run in runs:
        run_dir = out / run.name
        if not (run_dir / "done.json").is_file():
            continue
        run_curves = read_curves(run_dir)
        curves += [{"run": run.name, **r} for r in run_curves]
        row = {
            "run": run.name,
            "group": run.group,
            **final_metrics(run_curves),
            "train_seconds": json.loads((run_dir / "done.json").read_text())["seconds"],
        }
        if uses_batch_statistics(run):
            row.update(norm_mode_gap(run_dir))
        rows.append(row)
    return rows, curves


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, rows: list[dict], curves: list[dict], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, placement in zip(axes[0], ("pre", "post")):
        for row in rows:
            if row["group"] == "grid" and row["run"].endswith(placement):
                points = [
                    (int(c["step"]), float(c["train_loss"]))
                    for c in curves
                    if c["run"] == row["run"] and "train_loss" in c
                ]
                ax.plot(*zip(*points), label=row["run"]) if points else None
        ax.set(title=f"training loss, {placement}-norm", xlabel="step", ylabel="loss")
        ax.legend(fontsize=8)
    names = [r["run"] for r in rows]
    for ax, key in zip(axes[1], ("val_loss", metric)):
        ax.barh(names, [r.get(key, float("nan")) for r in rows])
        ax.set(title=f"final {key}")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def print_table(rows: list[dict], metric: str) -> None:
    print(
        f"{'run':<26}{'val_loss':>9}{metric[4:]:>9}{'train_loss':>11}{'eval-mode':>10}{'train-mode':>11}"
        f"{'sec':>6}"
    )
    for r in rows:
        print(
            f"{r['run']:<26}{r.get('val_loss', float('nan')):>9.3f}{r.get(metric, float('nan')):>9.3f}"
            f"{r.get('train_loss_last20', float('nan')):>11.3f}"
            f"{r.get('val_loss_norms_eval', float('nan')):>10.3f}"
            f"{r.get('val_loss_norms_train', float('nan')):>11.3f}{r['train_seconds']:>6.0f}"
        )


def write_report(out: Path, runs, final_metrics, read_curves, norm_mode_gap, metric: str = "val_cer") -> None:
    rows, curves = collect(out, runs, final_metrics, read_curves, norm_mode_gap)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_csv(out / "results.csv", rows)
    write_csv(out / "curves.csv", curves)
    plot(out / "study.png", rows, curves, metric)
    print_table(rows, metric)
    print(f"wrote {out}/results.json, results.csv, curves.csv, study.png")
