"""The classic baselines (Avalanche strategies) beside SimpleCIL and LDA, side by side.

    python benchmarks/classic_baselines.py [--scenario emoji-cil] [--network naive,ewc]

Frozen-feature mode for every strategy (EfficientNet-Lite0 features from the
feature cache, a linear head trained by the strategy), plus whole-network rows
(``train_backbone=true``, 1 epoch) for the strategies named by ``--network``.
Prints Ā, last, PILOT forgetting (sample-weighted, %), wall and CPU seconds,
and whether Avalanche's own metrics agreed with clbench's matrix.
"""

from __future__ import annotations

import argparse
import time

from clbench.evaluator import cpu_seconds
from clbench.registry import METHODS
from clbench.runner import RunSpec, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="emoji-cil")
    parser.add_argument("--network", default="naive", help="strategies to run on the whole network")
    args = parser.parse_args()
    rows = [(m, {}) for m in ("simplecil", "lda")]
    rows += [(n, {}) for n in METHODS.names() if n.startswith("avalanche:")]
    rows += [
        (f"avalanche:{n}", {"train_backbone": True, "train": {"epochs": 1}})
        for n in args.network.split(",")
        if n
    ]
    print(
        f"{'method':34} {'Ā':>6} {'last':>6} {'forget':>6} {'wall s':>7} {'CPU s':>7}  cross-check"
    )
    for method, options in rows:
        began, cpu = time.perf_counter(), cpu_seconds()
        result = run(RunSpec(scenario=args.scenario, method=method, method_options=options))
        wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
        m = result.metrics
        check = result.extra.get("avalanche_crosscheck")
        agree = "" if check is None else f"{check['cells_compared']} cells agree"
        label = method + (" (whole network, 1 ep)" if options else "")
        print(
            f"{label:34} {100 * m['avg_acc_sample']:6.2f} {100 * m['last_acc_sample']:6.2f} "
            f"{100 * m['forgetting_pilot']:6.2f} {wall:7.1f} {cpu:7.1f}  {agree}",
            flush=True,
        )


if __name__ == "__main__":
    main()
