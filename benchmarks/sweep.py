"""A sweep three ways on this machine: 1 worker x 2 threads, 2 workers x 1 thread,
and Ray (2 CPUs, 1 CPU per task), side by side, checking that all three store
identical accuracy matrices; then the rest of the grid is swept into the
2-worker store (resuming it: the compared points are skipped) and the
leaderboard summary of the whole grid is printed.

    nice -n 10 python benchmarks/sweep.py [--methods simplecil,ncm,knn,lda] [--seeds 3]
        [--compare emoji-cil] [--out reports/sweep.md]

The grid is the offline preset (`clbench sweep --preset offline`) restricted to
``--methods``; the three-way comparison runs its points on the ``--compare``
scenarios (all of them with ``--compare all``). Feature
caches are filled by an untimed warm-up sweep first, so the three timed sweeps
compare scheduling, not who embeds the images first (the cache is the user's,
``$CLBENCH_FEATURES``). Each timed sweep writes into
its own fresh results store.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from clbench.leaderboard.tables import mean_spread_text, runs_frame, scenario_board
from clbench.results import ResultsStore
from clbench.sweep import available_cores, run_sweep
from clbench.sweep.presets import preset_grids


def offline_points(methods: list[str], seeds: int):
    points = {}
    for grid in preset_grids("offline", seeds):
        grid.methods = [m for m in grid.methods if m in methods]
        for spec in grid.points():
            points[spec.key()] = spec
    return list(points.values())


def timed_sweep(name: str, points, root: Path, **how):
    store = ResultsStore(root / name / "runs")
    began = time.perf_counter()
    summary = run_sweep(points, store, root / name / "logs", **how)
    wall = time.perf_counter() - began
    failed = summary.by_status("failed")
    if failed:
        sys.exit(
            f"{name}: {len(failed)} points failed, first: {failed[0].label}: {failed[0].reason}"
        )
    in_points = sum(o.cpu_seconds for o in summary.outcomes)
    matrices = {r.config["spec_key"]: r.correct_matrix for r in store.all()}
    print(f"{name}: {wall:.1f} s wall, {in_points:.1f} CPU s inside the points", flush=True)
    return {"wall": wall, "cpu": summary.cpu_seconds, "points_cpu": in_points}, matrices, store


def leaderboard_summary(store: ResultsStore) -> list[str]:
    frame = runs_frame(store.all())
    scenarios = sorted(frame["scenario"].unique())
    methods = sorted(frame["method"].unique())
    cells: dict[tuple[str, str], str] = {}
    for scenario in scenarios:
        board = scenario_board(frame, scenario)
        for _, row in board.iterrows():
            avg = mean_spread_text(row["avg_acc_sample_mean"], row["avg_acc_sample_std"], 2)
            last = mean_spread_text(row["last_acc_sample_mean"], row["last_acc_sample_std"], 2)
            cells[(row["method"], scenario)] = f"{avg} / {last} ({row['seeds']})"
    lines = [
        "| method | " + " | ".join(scenarios) + " |",
        "| --- |" + " --- |" * len(scenarios),
    ]
    for method in methods:
        lines.append(
            f"| {method} | " + " | ".join(cells.get((method, s), "-") for s in scenarios) + " |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="simplecil,ncm,knn,lda")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--compare", default="emoji-cil", help="scenarios compared, or all")
    parser.add_argument("--out", default=None, help="also write the tables here (markdown)")
    args = parser.parse_args()
    os.environ.setdefault("CLBENCH_PROGRESS", "0")
    points = offline_points(args.methods.split(","), args.seeds)
    cores = available_cores()
    print(f"{len(points)} points on {cores} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Untimed: fill the feature cache; one point per scenario embeds all its images.
        first = list({p.scenario: p for p in reversed(points)}.values())
        timed_sweep("warm-up", first, root, workers=1, threads=cores)
        compared = [
            p for p in points if args.compare == "all" or p.scenario in args.compare.split(",")
        ]
        results, matrices = {}, {}
        for name, how in (
            ("1 worker x 2 threads", dict(workers=1, threads=2)),
            ("2 workers x 1 thread", dict(workers=2, threads=1)),
        ):
            results[name], matrices[name], store = timed_sweep(name, compared, root, **how)
        import ray

        ray.init(num_cpus=2, include_dashboard=False)
        try:
            name = "Ray, 2 CPUs, 1 per task"
            results[name], matrices[name], _ = timed_sweep(
                name, compared, root, ray_address="auto", threads=1, cpus_per_point=1
            )
        finally:
            ray.shutdown()
        began = time.perf_counter()
        rest = run_sweep(points, store, root / "rest" / "logs", workers=2, threads=1)
        rest_wall = time.perf_counter() - began
        if rest.by_status("failed"):
            sys.exit(f"rest of the grid: {rest.by_status('failed')[0].reason}")
        reference = matrices["1 worker x 2 threads"]
        identical = all(m == reference for m in matrices.values())
        assert len(reference) == len(compared)
        base = results["1 worker x 2 threads"]["wall"]
        lines = [
            f"Compared: offline preset, methods {args.methods}, {args.seeds} seeds, scenarios "
            f"{args.compare}: {len(compared)} runs per executor; {cores} cores; warm feature cache.",
            "",
            "| executor | wall s | CPU s (driver + workers) | CPU s inside the points | speed-up vs 1 worker |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, r in results.items():
            cpu = "-" if r["cpu"] is None else f"{r['cpu']:.1f}"
            lines.append(
                f"| {name} | {r['wall']:.1f} | {cpu} | {r['points_cpu']:.1f} | {base / r['wall']:.2f}x |"
            )
        lines += ["", f"Accuracy matrices identical across the three: {identical}", ""]
        lines += [
            f"Rest of the grid ({len(points)} runs in all), 2 workers, resuming the 2-worker store: "
            f"{len(rest.by_status('done'))} done, {len(rest.by_status('skipped'))} skipped; "
            f"{rest_wall:.1f} s wall, {rest.cpu_seconds:.1f} CPU s.",
            "",
        ]
        lines += ["Ā / last accuracy (%, sample-weighted), mean ± std over seeds (seeds):", ""]
        lines += leaderboard_summary(store)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if not identical:
        sys.exit("the executors' matrices differ")


if __name__ == "__main__":
    main()
