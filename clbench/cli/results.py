"""``clbench results``: the tidy table of stored runs, printed or exported."""

from __future__ import annotations

import argparse
from pathlib import Path

from clbench.errors import ConfigError

SHOWN = [
    "run_id",
    "scenario",
    "method",
    "backbone",
    "seed",
    "avg_acc_sample",
    "last_acc_sample",
    "forgetting_pilot",
    "wall_seconds",
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="print or export the table of stored runs (CSV, Parquet)",
        description="The table behind the leaderboard: one row per stored run, one column per "
        "variable (accuracy-type metrics in percent). Prints a summary, or exports every column.",
    )
    p.add_argument(
        "--runs",
        default=None,
        help="folder of stored RunResults (default leaderboards/runs or $CLBENCH_RESULTS)",
    )
    p.add_argument("--scenario", default=None, help="only runs of this scenario (name or label)")
    p.add_argument("--method", default=None, help="only runs of this method")
    p.add_argument(
        "--csv", default=None, metavar="PATH", help="write every column as CSV ('-' for stdout)"
    )
    p.add_argument("--parquet", default=None, metavar="PATH", help="write every column as Parquet")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on an unreadable stored record instead of skipping it with a warning",
    )
    p.add_argument("--all-columns", action="store_true", help="print every column, not a summary")
    p.set_defaults(func=results_command)


def writable_target(path: Path) -> None:
    """An export target must be a file in an existing folder (checked before work)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", "give a file name, e.g. runs.csv")
    if not path.parent.is_dir():
        raise ConfigError(
            f"the folder {path.parent} does not exist", f"create it first: mkdir -p {path.parent}"
        )


def _export(write, target: str) -> None:
    try:
        write()
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc


def results_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from clbench.leaderboard.tables import runs_frame
    from clbench.paths import results_root
    from clbench.results import ResultsStore

    for target in (args.csv, args.parquet):  # refused before anything is read
        if target and target != "-":
            writable_target(Path(target))
    store = ResultsStore(Path(args.runs) if args.runs else results_root())
    frame = runs_frame(store.all(args.strict))
    if args.scenario:
        frame = frame[
            (frame["scenario"] == args.scenario) | (frame["scenario_name"] == args.scenario)
        ]
    if args.method:
        frame = frame[frame["method"] == args.method]
    if args.csv == "-":
        print(frame.to_csv(index=False), end="")
    elif args.csv:
        _export(lambda: frame.to_csv(args.csv, index=False), args.csv)
    if args.parquet:
        try:
            _export(lambda: frame.to_parquet(args.parquet, index=False), args.parquet)
        except ImportError as exc:
            raise ConfigError(
                f"Parquet export needs pyarrow: {exc}", "pip install pyarrow"
            ) from exc
    if not (args.csv or args.parquet):
        if frame.empty:
            print("no stored runs match")
            return 0
        with pd.option_context(
            "display.width",
            200,
            "display.max_columns",
            None,
            "display.max_colwidth",
            60,
            "display.float_format",
            "{:.2f}".format,
        ):
            print(frame if args.all_columns else frame[SHOWN])
    return 0
