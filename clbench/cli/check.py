"""``clbench check``: the regression gate on expected accuracy numbers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clbench.errors import ConfigError

DEFAULT_EXPECTED = Path("leaderboards") / "expected.csv"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="fail when a metric dropped below its expected value (the CI gate)",
        description="Compare runs with the expected numbers in a CSV file (scenario, method, backbone, "
        "seed, options, metric, value, tolerance; values in percentage points). One-sided: only a "
        "change for the worse beyond the tolerance fails (a drop in accuracy or BWT, a rise in "
        "forgetting). Each row is answered by the newest matching stored run; runs that are missing "
        "are run now and added to the results store as new records. Exit status 1 when something "
        "regressed, 2 for a malformed file.",
    )
    p.add_argument(
        "expected",
        nargs="?",
        default=str(DEFAULT_EXPECTED),
        metavar="EXPECTED",
        help=f"expected-numbers file (default {DEFAULT_EXPECTED})",
    )
    p.add_argument(
        "--runs",
        default=None,
        help="results store to read and add runs to (default leaderboards/runs or $CLBENCH_RESULTS); "
        "CI passes a fresh temporary folder so every row is run by the code under test",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on an unreadable stored record instead of skipping it with a warning",
    )
    p.add_argument("--rerun", action="store_true", help="ignore stored runs: run every row now")
    p.add_argument(
        "--update",
        action="store_true",
        help="run every row now and rewrite the file's values from those runs (tolerances kept), "
        "printing the old and new values",
    )
    p.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    from clbench.paths import results_root
    from clbench.regression import (
        check_rewritable,
        evaluate,
        gather_runs,
        read_expected,
        updated_values,
        write_expected,
    )
    from clbench.results import ResultsStore

    path = Path(args.expected)
    expectations = read_expected(path, allow_empty_values=args.update)
    store = ResultsStore(Path(args.runs) if args.runs else results_root())
    if args.update:
        check_rewritable(path)  # before the runs, not after them
    runs = gather_runs(
        expectations,
        store,
        rerun=args.rerun or args.update,
        strict=args.strict,
        say=lambda text: print(f"clbench check: {text}", file=sys.stderr),
    )
    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.update:
        new, undefined = updated_values(expectations, runs)
        print_update(console, expectations, new)
        write_expected(path, expectations, new)
        console.print(f"updated {path}")
        if undefined:  # the runs are stored and the other rows written: nothing is lost
            raise ConfigError(
                f"{len(undefined)} row(s) of {path} were left unchanged because their run does "
                "not define the metric: "
                + "; ".join(
                    f"line {e.line} {e.metric} (run {runs[e.key].run_id})" for e in undefined
                ),
                "remove those rows: fwt needs unseen-task evaluation, forgetting needs 2+ tasks",
            )
        return 0
    outcomes = evaluate(expectations, runs)
    print_outcomes(console, outcomes)
    regressed = [o for o in outcomes if o.status == "REGRESSED"]
    if not regressed:
        console.print(f"all {len(outcomes)} checks passed ({path})")
        return 0
    console.print(f"{len(regressed)} of {len(outcomes)} checks regressed ({path}):")
    for o in regressed:  # one plain line per failure, whatever the terminal width
        e = o.expectation
        console.print(
            f"  REGRESSED line {e.line}: {e.key.describe()}: {e.metric} {o.measured:.2f}, "
            f"expected {e.value:.2f} (tolerance {e.tolerance:g}, change {o.change:+.2f}) "
            f"in run {o.run_id}",
            markup=False,
            highlight=False,
        )
    return 1


def _key_cells(e) -> list[str]:
    return [
        e.key.scenario,
        e.key.method,
        e.key.backbone,
        str(e.key.seed),
        e.key.options or "-",
        e.metric,
    ]


def print_outcomes(console: Console, outcomes) -> None:
    table = Table(
        title="regression check (points; change < 0 is worse; REGRESSED when the change, "
        "rounded to 0.01 as shown, is below -tolerance)"
    )
    for column in ("status", "scenario", "method", "backbone", "seed", "options", "metric"):
        table.add_column(column)
    table.add_column("scorer")
    for column in ("expected", "tolerance", "measured", "change"):
        table.add_column(column, justify="right")
    table.add_column("run")
    style = {"REGRESSED": "bold red", "improved": "green", "ok": ""}
    for o in outcomes:
        e = o.expectation
        table.add_row(
            o.status,
            *_key_cells(e),
            o.scorer,
            f"{e.value:.2f}",
            f"{e.tolerance:g}",
            f"{o.measured:.2f}",
            f"{o.change:+.2f}",
            o.run_id,
            style=style[o.status],
        )
    console.print(table)


def print_update(console: Console, expectations, new: dict) -> None:
    table = Table(title="expected values: old -> new (points)")
    for column in ("scenario", "method", "backbone", "seed", "options", "metric"):
        table.add_column(column)
    for column in ("old", "new", "difference"):
        table.add_column(column, justify="right")
    for e in expectations:
        value = new[(e.key, e.metric)]
        old = "-" if e.value is None else f"{e.value:.2f}"
        shown = "-" if value is None else f"{value:.2f}"
        diff = (
            "unchanged"
            if value == e.value
            else "new"
            if e.value is None
            else f"{value - e.value:+.2f}"
        )
        table.add_row(*_key_cells(e), old, shown, diff)
    console.print(table)
