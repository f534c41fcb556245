"""``clbench compare RUN_A RUN_B``: two stored runs side by side, differences marked."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEFAULT_OUT = Path("reports") / "compare"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two stored runs: matrices, metrics, configurations, manifests",
        description="Print two stored runs side by side (accuracy matrices and B - A, metrics, "
        "configuration, manifest), differing entries highlighted, and write the same as an "
        f"HTML page (default {DEFAULT_OUT}/<A>--<B>.html).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="a stored run id, or a unique part of one")
    p.add_argument("run_b", metavar="RUN_B", help="a stored run id, or a unique part of one")
    p.add_argument(
        "--runs",
        default=None,
        help="folder of stored RunResults (default leaderboards/runs or $CLBENCH_RESULTS)",
    )
    p.add_argument("--html", default=None, help="where to write the HTML page")
    p.add_argument(
        "--all", action="store_true", help="print every entry, not only the differing ones"
    )
    p.set_defaults(func=compare_command)


def print_comparison(comparison, console: Console, everything: bool = False) -> None:
    """Terminal tables: differing rows in bold yellow; equal rows hidden unless
    ``everything`` (metrics are always all shown)."""
    for section in comparison.sections:
        metrics = section.title.startswith("Metrics")
        rows = [r for r in section.rows if everything or metrics or r.differs]
        title = f"{section.title}: {section.differences} differing"
        if not rows:
            console.print(f"{title} (all equal)")
            continue
        table = Table(title=title, title_justify="left")
        for name in ("", "A", "B", *(["B - A"] if metrics else [])):
            table.add_column(name, overflow="fold")
        for r in rows:
            table.add_row(
                ("≠ " if r.differs else "  ") + r.key,
                r.a,
                r.b,
                *([r.delta] if metrics else []),
                style="bold yellow" if r.differs else None,
            )
        console.print(table)
    _print_matrices(comparison, console)


def _print_matrices(comparison, console: Console) -> None:
    """A and B side by side (A's columns, then B's), then B - A coloured."""
    n_a = len(comparison.matrix_a[0]) if comparison.matrix_a else 0
    n_b = len(comparison.matrix_b[0]) if comparison.matrix_b else 0
    both = Table(title="accuracy (%): task i (columns) after learning task t (rows), A then B")
    both.add_column("after")
    for name, n in (("A", n_a), ("B", n_b)):
        for i in range(n):
            both.add_column(f"{name}:T{i}", justify="right")
    for t in range(max(len(comparison.matrix_a), len(comparison.matrix_b))):
        row_a = comparison.matrix_a[t] if t < len(comparison.matrix_a) else ["-"] * n_a
        row_b = comparison.matrix_b[t] if t < len(comparison.matrix_b) else ["-"] * n_b
        both.add_row(f"t={t}", *row_a, *row_b)
    console.print(both)
    if comparison.matrix_delta is None:
        console.print("the runs have different numbers of tasks: no cell-by-cell difference")
        return
    delta = Table(title="B - A (percentage points): green where B is more accurate")
    delta.add_column("after")
    for i in range(n_a):
        delta.add_column(f"T{i}", justify="right")
    for t, row in enumerate(comparison.matrix_delta):
        cells = []
        for text, value in row:
            colour = "green" if value > 0.05 else "red" if value < -0.05 else "dim"
            cells.append(f"[{colour}]{text}[/{colour}]")
        delta.add_row(f"t={t}", *cells)
    console.print(delta)


def compare_command(args: argparse.Namespace) -> int:
    from clbench.leaderboard.compare import compare_runs, write_comparison
    from clbench.leaderboard.run_page import slug
    from clbench.paths import results_root
    from clbench.results import ResultsStore

    store = ResultsStore(Path(args.runs) if args.runs else results_root())
    a, b = store.load(args.run_a), store.load(args.run_b)
    comparison = compare_runs(a, b)
    print_comparison(comparison, Console(), everything=args.all)
    html = (
        Path(args.html) if args.html else DEFAULT_OUT / f"{slug(a.run_id)}--{slug(b.run_id)}.html"
    )
    write_comparison(comparison, html)
    print(f"compare: {html.resolve()}")
    return 0
