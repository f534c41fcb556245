"""Seed summary of finished comparisons: each side's per-seed values, mean and sd.

    .venv/bin/python benchmarks/fidelity/summarize.py /work/refs/fidelity/results/compare-TAG*.json

prints, for every step's accuracy, Ā, last and forgetting, both sides' values
per seed, their means and sample standard deviations (ddof 1), the difference
of the means and whether it lies within one reference sd (the issue's goal for
a trained method), then the seconds (wall and CPU) per training step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("avg", "last", "forgetting")


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def seed_table(reports: list[dict]) -> list[dict]:
    """One row per metric: both sides' per-seed values, mean, sd, difference, within-sd flag."""
    rows = []
    steps = len(reports[0]["reference"]["curve"])
    names = [(f"step {t}", ("curve", t)) for t in range(steps)] + [(m, (m, None)) for m in METRICS]
    for label, (key, index) in names:
        row: dict = {"metric": label}
        for side in ("reference", "clbench"):
            values = [r[side][key] if index is None else r[side][key][index] for r in reports]
            row[side] = values
            row[f"{side}_mean"], row[f"{side}_sd"] = mean_sd(values)
        row["difference"] = row["clbench_mean"] - row["reference_mean"]
        row["within_sd"] = abs(row["difference"]) <= row["reference_sd"]
        rows.append(row)
    return rows


def step_times(reports: list[dict]) -> dict:
    """Mean seconds per training step (wall, and CPU where recorded) per side, all phases pooled."""
    out = {}
    for side in ("reference", "clbench"):
        phases = [p for r in reports for p in r[side].get("train_phases") or []]
        steps = sum(p["steps"] for p in phases)
        if not steps:
            continue
        out[side] = {
            "steps": steps,
            "wall": sum(p["seconds_per_step"] * p["steps"] for p in phases) / steps,
        }
        if all("cpu_seconds_per_step" in p for p in phases):
            out[side]["cpu"] = sum(p["cpu_seconds_per_step"] * p["steps"] for p in phases) / steps
    return out


def main(paths: list[str]) -> int:
    reports = [json.loads(Path(p).read_text()) for p in paths]
    print(f"{len(reports)} runs: " + ", ".join(r["tag"] for r in reports))
    for row in seed_table(reports):
        ref = ", ".join(f"{v:.2f}" for v in row["reference"])
        ours = ", ".join(f"{v:.2f}" for v in row["clbench"])
        print(
            f"{row['metric']:>10}: PILOT {ref} ({row['reference_mean']:.2f} sd {row['reference_sd']:.2f})"
            f" | clbench {ours} ({row['clbench_mean']:.2f} sd {row['clbench_sd']:.2f})"
            f" | diff {row['difference']:+.2f}{'' if row['within_sd'] else '  OUTSIDE 1 sd'}"
        )
    for side, t in step_times(reports).items():
        cpu = f", {t['cpu']:.3f} CPU s/step" if "cpu" in t else ""
        print(f"{side}: {t['steps']} steps, {t['wall']:.3f} s/step{cpu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
