"""``clbench leaderboard``: the static HTML site from every stored RunResult."""

from __future__ import annotations

import argparse
from pathlib import Path

from clbench.errors import ClbenchError

DEFAULT_SITE = Path("leaderboards") / "site"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="build the static HTML leaderboard site from the stored runs",
        description="Build a static HTML site from the stored RunResults: a methods x scenarios "
        "table (Ā / last, mean ± std over seeds, both accuracy conventions, with and without the "
        "task id kept apart), a sortable leaderboard per scenario (Ā, last, forgetting, BWT, "
        "parameters, time, memory, seeds) with interactive charts (accuracy after each task, "
        "accuracy vs cost with the Pareto front, forgetting per task), and one page per run. "
        "Open index.html from disk: no network needed.",
    )
    p.add_argument(
        "--runs",
        default=None,
        help="folder of stored RunResults (default leaderboards/runs or $CLBENCH_RESULTS)",
    )
    p.add_argument(
        "--out", default=str(DEFAULT_SITE), help=f"output folder (default {DEFAULT_SITE})"
    )
    p.add_argument(
        "--redraw",
        action="store_true",
        help="redraw every figure instead of reusing those already in --out",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes drawing figures (default: all cores)"
    )
    p.set_defaults(func=leaderboard_command)


def leaderboard_command(args: argparse.Namespace) -> int:
    from clbench.leaderboard.site import build_site
    from clbench.paths import results_root
    from clbench.results import ResultsStore

    store = ResultsStore(Path(args.runs) if args.runs else results_root())
    results = store.all()
    if not results:
        raise ClbenchError(
            f"no stored runs in {store.root}", "run `clbench run` first, or pass --runs DIR"
        )
    summary = build_site(results, Path(args.out), reuse=not args.redraw, workers=args.workers)
    print(
        f"{len(results)} runs, {len(summary.scenario_pages)} scenarios; figures drawn {summary.figures_drawn}, "
        f"reused {summary.figures_reused}; {summary.seconds:.1f}s"
    )
    print(f"open: {summary.index.resolve()}")
    return 0
