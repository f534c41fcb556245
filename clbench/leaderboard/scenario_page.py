"""A scenario's page: the sortable leaderboard (short labels, both accuracy
conventions, costs, published numbers on matching protocols) and the
interactive charts with their static PNG fallbacks (accuracy after each task,
Ā against wall time and trainable parameters with the Pareto front, forgetting
per task). Chart data goes into ``<script type="application/json">`` blocks
with ``<``, ``>`` and ``&`` escaped, so no record string can close the block."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from clbench import metrics
from clbench.leaderboard import figures
from clbench.leaderboard.published import Published, published_for
from clbench.leaderboard.run_page import slug
from clbench.leaderboard.tables import (
    BOARD_COLUMNS,
    GROUP_KEYS,
    latest_per_seed,
    mean_spread_text,
    pareto_front,
)
from clbench.results import RunResult

# Extra columns of a scenario board beside BOARD_COLUMNS: the other convention.
TASK_COLUMNS = (
    ("avg_acc_task", "Ā (%, task-averaged)", 2),
    ("last_acc_task", "last (%, task-averaged)", 2),
)
# A scenario figure: (chart key, PNG path, drawing function, its arguments).
Figure = tuple[str, Path, Callable[..., Path], tuple]


def json_script(value: Any) -> markupsafe.Markup:
    """JSON safe inside ``<script type="application/json">``: no record string
    can end the element or start a comment, whatever it contains."""
    text = json.dumps(value, sort_keys=True, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return markupsafe.Markup(text)


def _mean_curve(runs: Sequence[RunResult], convention: str) -> tuple[np.ndarray, np.ndarray]:
    curves = [figures.step_accuracy(r, convention) for r in runs]
    length = min(len(c) for c in curves)
    stacked = np.stack([c[:length] for c in curves])
    std = stacked.std(axis=0, ddof=1) if len(curves) > 1 else np.full(length, np.nan)
    return stacked.mean(axis=0), std


def _mean_forgetting(runs: Sequence[RunResult]) -> np.ndarray:
    """Per-task forgetting (%, PILOT convention), mean over seeds (NaN where no
    seed measured a task's final accuracy)."""
    rows = [metrics.task_forgetting(figures.accuracy_percent(r)) for r in runs]
    length = min(len(r) for r in rows)
    stacked = np.stack([r[:length] for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN
        return np.nanmean(stacked, axis=0)


def published_text(entries: list[Published], method: str) -> tuple[str, str]:
    """The published column of one board row: numbers and their source."""
    mine = [e for e in entries if e.names_method(method)]
    if not mine:
        return "", ""
    e = mine[0]
    numbers = " / ".join("-" if v is None else f"{v:.2f}" for v in (e.avg_acc, e.last_acc))
    return f"{numbers} ({e.backbone})", e.source


def _cell(mean: float, std: float, digits: int) -> dict[str, str]:
    return {
        "text": mean_spread_text(mean, std, digits),
        "sort": "" if mean != mean else f"{mean:.6g}",
    }


def board_rows(
    board: pd.DataFrame,
    published: list[Published],
    run_links: dict[str, str],
    columns: Sequence[tuple[str, str, int]],
) -> list[dict]:
    rows = []
    for rec in board.to_dict("records"):
        pub_text, pub_source = published_text(published, rec["method"])
        short = rec["short_label"][len(rec["method"]) :].strip()
        rows.append(
            {
                **{k: rec[k] for k in GROUP_KEYS},
                "label": rec["label"],
                "short_options": short,
                "seeds": rec["seeds"],
                "cells": [
                    _cell(rec[f"{col}_mean"], rec[f"{col}_std"], digits)
                    for col, _, digits in columns
                ],
                "runs": [
                    (seed, run_links[run_id])
                    for run_id, seed in zip(rec["run_ids"], rec["run_seeds"], strict=True)
                ],
                "published": pub_text,
                "published_source": pub_source,
            }
        )
    return rows


def _scenario_figures(
    scenario: str, board: pd.DataFrame, by_id: dict[str, RunResult], base: Path
) -> tuple[dict[str, dict], list[Figure]]:
    """The scenario's interactive chart specs and the PNG fallbacks to draw."""
    labels = list(board["label"])
    entries = [[by_id[r] for r in ids] for ids in board["run_ids"]]
    ylabel = "accuracy on seen tasks (%, sample-weighted)"
    curves = [
        (label, *_mean_curve(runs, "sample")) for label, runs in zip(labels, entries, strict=True)
    ]
    scores = list(board["avg_acc_sample_mean"])
    per_entry = [_mean_forgetting(runs) for runs in entries]
    length = min((len(f) for f in per_entry), default=0)
    forgetting = np.stack([f[:length] for f in per_entry]) if per_entry else np.zeros((0, 0))
    specs = {"curves": figures.curves_spec(curves, f"{scenario}: accuracy after each task", ylabel)}
    curves_png = base.with_suffix(".png")
    pngs: list[Figure] = [
        (
            "curves",
            curves_png,
            figures.comparison,
            (curves, f"{scenario}: accuracy after each task", curves_png, ylabel),
        )
    ]
    for key, column, xlabel in (
        ("time", "wall_seconds_mean", "wall time (s)"),
        ("params", "trainable_parameters_mean", "trainable parameters (last task)"),
    ):
        costs = [float(c) for c in board[column]]
        front = pareto_front(costs, scores)
        if any(c == 0 for c in costs):
            # Frozen methods train nothing: shift by one so a log axis can show them.
            costs, xlabel = [c + 1 for c in costs], f"{xlabel} + 1"
        title = f"{scenario}: Ā vs {xlabel}"
        specs[key] = figures.scatter_spec(labels, costs, scores, front, xlabel, title)
        png = base.with_name(f"{base.name}-{key}.png")
        pngs.append(
            (key, png, figures.cost_scatter, (labels, costs, scores, front, xlabel, title, png))
        )
    title = f"{scenario}: forgetting per task (%, PILOT)"
    specs["forgetting"] = figures.forgetting_spec(labels, forgetting, title)
    png = base.with_name(f"{base.name}-forgetting.png")
    pngs.append(("forgetting", png, figures.forgetting_map, (labels, forgetting, title, png)))
    return specs, pngs


def scenario_page(
    env: jinja2.Environment,
    out: Path,
    scenario: str,
    board: pd.DataFrame,
    frame: pd.DataFrame,
    by_id: dict[str, RunResult],
    published: list[Published],
) -> tuple[Path, list[Figure]]:
    """Write one scenario page; return it and the fallback PNGs it shows."""
    page = out / "scenarios" / f"{slug(scenario)}.html"
    runs = frame[frame["scenario"] == scenario]
    first = by_id[runs["run_id"].iloc[0]]
    protocol = first.config.get("scenario", {}).get("protocol", {})
    entries = published_for(published, first.scenario, protocol)
    if first.task_incremental:
        entries = []  # published numbers are class-incremental: never beside task-incremental ones
    run_links = {rid: f"../runs/{slug(rid)}/index.html" for rid in runs["run_id"]}
    specs, pngs = _scenario_figures(scenario, board, by_id, page.with_suffix(""))
    latest = set(latest_per_seed(runs)["run_id"])
    columns = [*BOARD_COLUMNS[:2], *TASK_COLUMNS, *BOARD_COLUMNS[2:]]
    page.write_text(
        env.get_template("scenario.html").render(
            title=f"{scenario} leaderboard",
            scenario=scenario,
            kind=first.scenario_kind,
            scorer=", ".join(sorted(set(runs["scorer"]))),
            task_incremental=first.task_incremental,
            protocol=json.dumps(protocol, sort_keys=True, default=str),
            headers=[header for _, header, _ in columns],
            rows=board_rows(board, entries, run_links, columns),
            backbones=sorted(set(board["backbone"])),
            published=entries,
            charts={key: json_script(spec) for key, spec in specs.items()},
            fallbacks={key: png.name for key, png, _, _ in pngs},
            all_runs=[
                {**rec, "href": run_links[rec["run_id"]], "superseded": rec["run_id"] not in latest}
                for rec in runs.iloc[::-1].to_dict("records")
            ],
            home_href="../index.html",
            assets_href="../assets/",
        )
    )
    return page, pngs
