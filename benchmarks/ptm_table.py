"""Every image method of clbench on one scenario, backbone and small shared configuration, one table.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/ptm_table.py [--image-size 56] [--tasks 3] \
        [--epochs 2] [--only ranpac,ease] [--set METHOD.KEY=VALUE] [--out reports/ptm-table.md]

Every registered image method runs with its defaults, except the shared
configuration: ``train.epochs`` (``--epochs``) for every method that trains,
and the few options listed in ``SHARED`` (stated in the table's header).
Columns: Ā and last accuracy (sample-weighted), PILOT forgetting, wall and
CPU seconds of the run (this process's user + system time), trainable
parameters after the last task, and the published Ā / last numbers of
``clbench/leaderboard/published.py`` *only* where a published row matches the
scenario and its protocol (none do for the emoji scenarios, which are
clbench's own). Rows are printed and appended to ``--out`` as each run ends.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from clbench.evaluator import cpu_seconds
from clbench.leaderboard.published import load_published, published_for
from clbench.options import merge_options, parse_sets
from clbench.registry import METHODS
from clbench.results import ResultsStore
from clbench.runner import RunSpec, build_scenario, run

#: Options every table shares beyond the epochs; each is printed in the header.
SHARED = {
    # A 2,000-d projection: the default 10,000-d float64 Gram costs 800 MB and a long
    # eigendecomposition per task on a shared CPU.
    "ranpac": {"projection_dim": 2000},
    # The pool is split over the scenario's tasks.
    "coda_prompt": {"num_tasks": None},
}
#: The new methods first, so a run cut short still reports them.
FIRST = ("ranpac", "ease", "slca", "l2p", "dualprompt", "coda_prompt")


def image_methods() -> list[str]:
    names = [n for n in METHODS.names() if "image" in METHODS.get(n).factory.modalities]
    return [n for n in FIRST if n in names] + sorted(n for n in names if n not in FIRST)


def options_for(method: str, epochs: int, tasks: int, sets: list[str]) -> dict:
    params = inspect.signature(METHODS.get(method).factory).parameters
    options: dict = {"train": {"epochs": epochs}} if "train" in params else {}
    shared = {k: (tasks if v is None else v) for k, v in SHARED.get(method, {}).items()}
    options = merge_options(options, shared)
    for item in sets:
        name, _, rest = item.partition(".")
        if name == method:
            options = merge_options(options, parse_sets([rest])[0])
    return options


def published_cell(method: str, scenario: str, protocol: dict) -> str:
    rows = [
        p for p in published_for(load_published(), scenario, protocol) if p.names_method(method)
    ]
    if not rows:
        return "—"
    return "; ".join(f"{p.avg_acc} / {p.last_acc} ({p.source})" for p in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="emoji-cil")
    parser.add_argument("--backbone", default="dinov2-vits14")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--only", default="", help="comma-separated methods (default: all image methods)"
    )
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--out", default=None, help="markdown file the rows are appended to")
    args = parser.parse_args()
    store = ResultsStore(args.results_dir) if args.results_dir else None
    scenario = build_scenario(args.scenario, {"num_tasks": args.tasks})
    methods = [m for m in args.only.split(",") if m] or image_methods()
    header = [
        f"{args.scenario}, {args.backbone}, {args.image_size} px, scenario.num_tasks={args.tasks}, "
        f"train.epochs={args.epochs}, other options: {SHARED} (num_tasks=None: the scenario's), "
        f"extra: {args.sets or 'none'}",
        "",
        "| method | Ā | last | forgetting (PILOT) | wall s | CPU s | trainable params | published Ā / last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out = Path(args.out) if args.out else None
    for line in header:
        print(line, flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(header) + "\n")
    for method in methods:
        options = options_for(method, args.epochs, args.tasks, args.sets)
        spec = RunSpec(
            scenario=args.scenario,
            method=method,
            backbone=args.backbone,
            image_size=args.image_size,
            method_options=options,
            scenario_options={"num_tasks": args.tasks},
        )
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = run(spec, store=store)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        m = result.metrics
        row = (
            f"| {method} | {100 * m['avg_acc_sample']:.2f} | {100 * m['last_acc_sample']:.2f} | "
            f"{100 * m['forgetting_pilot']:.2f} | {wall:.0f} | {cpu:.0f} | "
            f"{result.trainable_parameters[-1]:,} | "
            f"{published_cell(method, args.scenario, scenario.protocol)} |"
        )
        print(row, flush=True)
        if out:
            with out.open("a") as file:
                file.write(row + "\n")


if __name__ == "__main__":
    main()
