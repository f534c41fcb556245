"""``clbench report RUN_ID``: one run's page and figures under reports/."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_REPORTS = Path("reports") / "runs"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one run's HTML page and PNG figures",
        description="Write the page of one stored run (accuracy-matrix heatmap, accuracy after each "
        "task, per-task bars, metrics, configuration and manifest) and its PNGs to "
        f"{DEFAULT_REPORTS}/<run id>/.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a stored run id, or a unique part of one")
    p.add_argument(
        "--runs",
        default=None,
        help="folder of stored RunResults (default leaderboards/runs or $CLBENCH_RESULTS)",
    )
    p.add_argument(
        "--out", default=str(DEFAULT_REPORTS), help=f"output folder (default {DEFAULT_REPORTS})"
    )
    p.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from clbench.leaderboard.site import write_report
    from clbench.paths import results_root
    from clbench.results import ResultsStore

    result = ResultsStore(Path(args.runs) if args.runs else results_root()).load(args.run_id)
    page = write_report(result, Path(args.out))
    print(f"report: {page.resolve()}")
    return 0
