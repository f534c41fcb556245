"""Time `clbench leaderboard` on 100 stored runs.

The 100 RunResults are synthesised from one real run (the newest stored one,
or a fresh SimpleCIL run on emoji-cil): 10 method names x 5 seeds x 2 scenario
labels, each with its correct counts perturbed by binomial noise and its
metrics recomputed. They exist only inside this benchmark's temporary folder,
never in leaderboards/.

    python benchmarks/leaderboard_build.py [--runs DIR] [--count 100]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from clbench import metrics
from clbench.evaluator import cpu_seconds
from clbench.leaderboard.site import build_site
from clbench.paths import results_root
from clbench.results import ResultsStore, RunResult, new_run_id


def real_run(folder: Path) -> RunResult:
    stored = ResultsStore(folder).all()
    if stored:
        return stored[-1]
    from clbench.runner import RunSpec, run

    print("no stored run found: running SimpleCIL on emoji-cil once")
    return run(RunSpec(method="simplecil"))


def perturbed(
    base: RunResult, method: str, seed: int, scenario_option: int | None, rng
) -> RunResult:
    result = copy.deepcopy(base)
    counts = np.asarray(base.test_counts)
    correct = np.array([[-1 if v is None else v for v in row] for row in base.correct_matrix])
    rate = np.clip(correct / counts[None, :] + rng.normal(0, 0.03), 0, 1)
    noisy = np.where(correct >= 0, rng.binomial(counts[None, :].repeat(len(counts), 0), rate), -1)
    acc = metrics.accuracy_matrix(noisy.clip(min=0), counts)
    acc[noisy < 0] = np.nan
    result.method = method
    result.seed = seed
    result.run_id = new_run_id(base.scenario, method, seed)
    result.config = {**base.config, "method": {"name": method}}
    if scenario_option is not None:
        result.config["scenario"] = {**base.config["scenario"], "variant": scenario_option}
    result.correct_matrix = [[None if c < 0 else int(c) for c in row] for row in noisy]
    result.accuracy_matrix = [[float(v) for v in row] for row in acc]
    result.metrics = metrics.summarize(noisy.clip(min=0), counts)
    result.timings = {**base.timings, "total_seconds": float(rng.uniform(2, 600))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default=None, help="where to find the real run (default: the results store)"
    )
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()

    base = real_run(Path(args.runs) if args.runs else results_root())
    rng = np.random.default_rng(0)
    runs = []
    for n in range(args.count):
        method, seed, variant = (
            f"method-{n % 10}",
            1993 + (n // 10) % 5,
            None if n < args.count // 2 else 1,
        )
        runs.append(perturbed(base, method, seed, variant, rng))
    print(f"base run: {base.run_id} ({len(base.test_counts)} tasks); {len(runs)} synthetic runs")

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(Path(tmp) / "runs")
        for result in runs:
            store.write(result)
        began = time.perf_counter()
        loaded = store.all()
        load_seconds = time.perf_counter() - began
        rows = []
        for label, workers, reuse in (
            ("cold, 1 process", 1, False),
            ("cold, all cores", None, False),
            ("warm (figures reused)", None, True),
        ):
            cpu_before = cpu_seconds()
            site = build_site(loaded, Path(tmp) / "site", reuse=reuse, workers=workers)
            rows.append(
                (
                    label,
                    site.seconds,
                    cpu_seconds() - cpu_before,
                    site.figures_drawn,
                    site.figures_reused,
                )
            )
    print(
        f"reading {len(loaded)} records: {load_seconds:.2f}s; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} (other processes slow the figures down)"
    )
    print(
        f"{'build':<24}{'wall s':>8}{'CPU s':>8}{'figures drawn':>15}{'reused':>8}{'wall s per run':>16}"
    )
    for label, seconds, cpu, drawn, reused in rows:
        print(
            f"{label:<24}{seconds:>8.2f}{cpu:>8.2f}{drawn:>15}{reused:>8}{seconds / len(runs):>16.3f}"
        )


if __name__ == "__main__":
    main()
