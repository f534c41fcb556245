"""Terminal tables for run summaries."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from clbench.results import RunResult


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage; '-' for a cell that was not evaluated."""
    if value is None or value != value:
        return "-"
    return f"{100 * value:.{digits}f}"


def print_run_summary(
    result: RunResult, stored_at: Path | None, console: Console | None = None
) -> None:
    console = console or Console()
    n = len(result.test_counts)
    measure = "accuracy" if result.scorer == "accuracy" else f"score ({result.scorer})"
    setting = "task-incremental" if result.task_incremental else result.config.get("protocol", "")
    matrix = Table(
        title=f"{result.method} on {result.scenario} ({setting}): {measure} (%) on task i "
        "(columns) after learning task t (rows)"
    )
    matrix.add_column("after", justify="right")
    for i in range(n):
        matrix.add_column(f"T{i}", justify="right")
    for t, row in enumerate(result.accuracy_matrix):
        matrix.add_row(f"t={t}", *[pct(v, 1) for v in row])
    matrix.add_row("n", *[str(c) for c in result.test_counts], style="dim")
    console.print(matrix)

    m = result.metrics
    summary = Table(title=f"summary ({measure}; Ā and last over seen tasks)")
    for col in ("Ā (sample)", "last (sample)", "Ā (task)", "forgetting (PILOT)", "BWT", "time (s)"):
        summary.add_column(col, justify="right")
    summary.add_row(
        pct(m["avg_acc_sample"]),
        pct(m["last_acc_sample"]),
        pct(m["avg_acc_task"]),
        pct(m["forgetting_pilot"]),
        pct(m["bwt"]),
        f"{result.timings['total_seconds']:.1f}",
    )
    console.print(summary)
    if m.get("fwt") is not None:
        console.print(
            f"forward transfer (accuracy on each domain before learning it): {pct(m['fwt'])}"
        )
    if "op" in m:  # an instruction stream (text): TRACE-style metrics and held-out retention
        scorers = ", ".join(dict.fromkeys(result.scorers))
        console.print(
            f"text stream ({scorers}): OP {pct(m['op'])}, BWT {pct(m['bwt'])}, FWT vs zero-shot "
            f"{pct(m['fwt_zero_shot'])}, zero-shot mean {pct(m['zero_shot_mean'])}"
        )
        if m.get("retention") is not None:
            console.print(
                f"general-ability retention (held-out tasks): {pct(m['retention'])} "
                f"({pct(m['heldout_before'])} before the first task -> {pct(m['heldout_after'])} "
                "after the last)"
            )
    if "harmonic_mean" in m:
        console.print(
            f"few-shot, after the last session: base {pct(m['base_acc'])}, novel "
            f"{pct(m['novel_acc'])}, harmonic mean {pct(m['harmonic_mean'])}"
        )
    if result.task_incremental:
        console.print(
            "task-incremental: scores restricted to the tested task's classes "
            "(methods that use the id were told it)"
        )
    t = result.timings
    console.print(
        f"features: {t['features_extracted']} extracted in {t['feature_extraction_seconds']:.1f}s, "
        f"{t['features_from_cache']} served from the cache; peak RSS {result.peak_memory['cpu_rss_mb']:.0f} MiB"
    )
    if stored_at is not None:
        console.print(f"stored: {stored_at}")
