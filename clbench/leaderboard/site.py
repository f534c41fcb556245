"""The static leaderboard site, built from RunResults only.

Layout of a site (every link relative, so it works opened from disk)::

    index.html                      methods x scenarios (Ā / last), the scenario list
    assets/plotly.min.js            copied from the installed plotly package at build time
    scenarios/<scenario>.html       sortable leaderboard, interactive charts, all runs
    scenarios/<scenario>*.png       static fallbacks of those charts
    runs/<run>/index.html           one run: figures, matrix, metrics, classes, config, manifest
    runs/<run>/{heatmap,curve,bars}.png

Pages come from jinja2 templates with autoescaping on, so every string from a
record (method names, config values) reaches the HTML as text; chart data goes
into ``<script type="application/json">`` blocks with ``<``, ``>`` and ``&``
escaped, so no record string can close the block. Stored records never change,
so a run's PNGs already in the output folder are reused (``reuse=False``
redraws them); a scenario's PNGs are redrawn only when what they show changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from clbench import metrics
from clbench.errors import ClbenchError
from clbench.leaderboard import figures
from clbench.leaderboard.published import Published, load_published, published_for
from clbench.leaderboard.run_page import (
    METRIC_NAMES,
    RUN_FIGURES,
    environment,
    run_context,
    slug,
    write_report,
    write_run_page,
)
from clbench.leaderboard.tables import (
    BOARD_COLUMNS,
    CONVENTIONS,
    GROUP_KEYS,
    SETTINGS,
    latest_per_seed,
    mean_spread_text,
    overview,
    pareto_front,
    runs_frame,
    scenario_board,
)
from clbench.results import RunResult

__all__ = [
    "METRIC_NAMES",
    "SiteSummary",
    "build_site",
    "environment",
    "run_context",
    "slug",
    "write_report",
    "write_run_page",
]

# Bump when figures change look, so reused PNGs from an older build are redrawn.
FIGURES_VERSION = "2"
STAMP = ".clbench-site.json"
# Extra columns of a scenario board beside BOARD_COLUMNS: the other convention.
TASK_COLUMNS = (
    ("avg_acc_task", "Ā (%, task-averaged)", 2),
    ("last_acc_task", "last (%, task-averaged)", 2),
)


@dataclass
class SiteSummary:
    out: Path
    index: Path
    scenario_pages: dict[str, Path] = field(default_factory=dict)
    run_pages: dict[str, Path] = field(default_factory=dict)
    figures_drawn: int = 0
    figures_reused: int = 0
    seconds: float = 0.0


def json_script(value: Any) -> markupsafe.Markup:
    """JSON safe inside ``<script type="application/json">``: no record string
    can end the element or start a comment, whatever it contains."""
    text = json.dumps(value, sort_keys=True, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return markupsafe.Markup(text)


def copy_plotly(out: Path) -> Path:
    """The plotly bundle, copied from the installed package so the site's charts
    work opened from disk with no network (copied, never committed)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ClbenchError(
            "the plotly package is not installed: the site's charts need its JavaScript bundle",
            "pip install plotly (it is in clbench's dependencies)",
        )
    source = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not source.exists():
        raise ClbenchError(f"plotly is installed but {source} is missing", "reinstall plotly")
    target = out / "assets" / "plotly.min.js"
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


# ---------------------------------------------------------------- figures

Job = tuple[Callable[..., Path], tuple]
# A scenario figure: (chart key, PNG path, drawing function, its arguments).
Figure = tuple[str, Path, Callable[..., Path], tuple]


def _draw(job: Job) -> Path:
    draw, args = job
    return draw(*args)


def draw_figures(jobs: list[Job], workers: int) -> None:
    """Draw figures, in worker processes when there are many (matplotlib is
    single-threaded and a PNG costs tens of milliseconds)."""
    if workers <= 1 or len(jobs) < 12:
        for job in jobs:
            _draw(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_draw, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _read_stamp(out: Path) -> dict[str, Any]:
    stamp = out / STAMP
    try:
        data = json.loads(stamp.read_text()) if stamp.exists() else {}
    except json.JSONDecodeError:
        return {}
    return data if data.get("figures_version") == FIGURES_VERSION else {}


def _run_figure_jobs(
    results: Sequence[RunResult], out: Path, reuse: bool, summary: SiteSummary
) -> list[Job]:
    jobs: list[Job] = []
    for result in results:
        folder = out / "runs" / slug(result.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, draw in RUN_FIGURES.items():
            png = folder / f"{kind}.png"
            if reuse and png.exists():
                summary.figures_reused += 1
            else:
                jobs.append((draw, (result, png)))
    return jobs


# ---------------------------------------------------------------- scenario pages


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


def _published_text(entries: list[Published], method: str) -> tuple[str, str]:
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
        pub_text, pub_source = _published_text(published, rec["method"])
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


def _figure_key(args: tuple) -> str:
    """What a scenario PNG shows, hashed: unchanged inputs mean an unchanged PNG."""
    text = json.dumps(args, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
    return hashlib.sha256(f"{FIGURES_VERSION}:{text}".encode()).hexdigest()


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


# ---------------------------------------------------------------- the front page


def _published_cell(
    published: list[Published], scenario_result: RunResult, method: str
) -> dict[str, str] | None:
    protocol = scenario_result.config.get("scenario", {}).get("protocol", {})
    text, source = _published_text(
        published_for(published, scenario_result.scenario, protocol), method
    )
    return {"text": text, "source": source} if text else None


def overview_tables(
    frame: pd.DataFrame,
    scenarios: list[str],
    scenario_runs: dict[str, RunResult],
    published: list[Published],
) -> list[dict[str, Any]]:
    """The front page's methods x scenarios tables, one per (setting, convention):
    each cell Ā / last, mean ± std over seeds and the number of seeds, the best Ā
    of each column marked. Published numbers sit beside the sample-weighted
    class-incremental cells only (the convention and setting they were reported in)."""
    long = overview(frame)
    tables = []
    for task_incremental, setting, setting_text in SETTINGS:
        part = long[long["task_incremental"] == task_incremental]
        if part.empty:
            continue
        columns = [s for s in scenarios if s in set(part["scenario"])]
        entry_keys = ["label", "short_label", "method", "method_options", "backbone"]
        entries = part[entry_keys].drop_duplicates().sort_values("label", kind="stable")
        for convention, name, avg, last in CONVENTIONS:
            best = part.groupby("scenario")[f"{avg}_mean"].max().to_dict()
            cells = {(rec["label"], rec["scenario"]): rec for rec in part.to_dict("records")}
            rows = []
            for entry in entries.to_dict("records"):
                row = {**entry, "cells": []}
                for scenario in columns:
                    rec = cells.get((entry["label"], scenario))
                    pub = (
                        _published_cell(published, scenario_runs[scenario], entry["method"])
                        if convention == "sample" and not task_incremental
                        else None
                    )
                    if rec is None:
                        row["cells"].append(
                            {"empty": True, "best": False, "sort": "", "published": pub}
                        )
                        continue
                    mean = rec[f"{avg}_mean"]
                    row["cells"].append(
                        {
                            "empty": False,
                            "avg": mean_spread_text(mean, rec[f"{avg}_std"], 2),
                            "last": mean_spread_text(rec[f"{last}_mean"], rec[f"{last}_std"], 2),
                            "seeds": rec["seeds"],
                            "sort": "" if mean != mean else f"{mean:.6g}",
                            "best": mean == mean and mean >= best.get(scenario, np.inf),
                            "published": pub,
                        }
                    )
                rows.append(row)
            tables.append(
                {
                    "setting": setting,
                    "setting_text": setting_text,
                    "convention": convention,
                    "convention_text": name,
                    "scenarios": [
                        {
                            "name": s,
                            "href": f"scenarios/{slug(s)}.html",
                            "kind": scenario_runs[s].scenario_kind,
                            "scorer": "+".join(sorted(set(part[part["scenario"] == s]["scorer"]))),
                        }
                        for s in columns
                    ],
                    "rows": rows,
                }
            )
    return tables


def _index_row(scenario: str, board: pd.DataFrame, runs: int) -> dict[str, Any]:
    best = board.iloc[0]
    return {
        "name": scenario,
        "href": f"scenarios/{slug(scenario)}.html",
        "runs": runs,
        "entries": len(board),
        "best": best["label"],
        "best_backbone": best["backbone"],
        "best_avg": mean_spread_text(best["avg_acc_sample_mean"], best["avg_acc_sample_std"], 2),
    }


# ---------------------------------------------------------------- the site


def build_site(
    results: Sequence[RunResult],
    out: Path,
    published: list[Published] | None = None,
    reuse: bool = True,
    workers: int | None = None,
) -> SiteSummary:
    """Write the whole site for ``results`` into ``out`` and return what was written."""
    began = time.perf_counter()
    out = Path(out)
    (out / "scenarios").mkdir(parents=True, exist_ok=True)
    copy_plotly(out)
    env = environment()
    published = load_published() if published is None else published
    frame = runs_frame(results)
    by_id = {r.run_id: r for r in results}
    summary = SiteSummary(out=out, index=out / "index.html")
    stamp = _read_stamp(out) if reuse else {}
    jobs = _run_figure_jobs(results, out, reuse and bool(stamp), summary)

    labels = dict(zip(frame["run_id"], frame["scenario"], strict=True))
    for result in results:
        summary.run_pages[result.run_id] = write_run_page(
            env,
            result,
            out / "runs" / slug(result.run_id),
            home_href="../../index.html",
            scenario_href=f"../../scenarios/{slug(labels[result.run_id])}.html",
        )

    scenarios = sorted(set(labels.values()))
    scenario_runs = {}
    listing = []
    old_keys, new_keys = stamp.get("scenario_figures", {}), {}
    for scenario in scenarios:
        board = scenario_board(frame, scenario)
        page, pngs = scenario_page(env, out, scenario, board, frame, by_id, published)
        summary.scenario_pages[scenario] = page
        for _, png, draw, args in pngs:
            key = _figure_key(args)
            new_keys[png.name] = key
            if old_keys.get(png.name) == key and png.exists():
                summary.figures_reused += 1
            else:
                jobs.append((draw, args))
        scenario_runs[scenario] = by_id[frame.loc[frame["scenario"] == scenario, "run_id"].iloc[0]]
        listing.append(_index_row(scenario, board, int((frame["scenario"] == scenario).sum())))

    draw_figures(jobs, workers if workers is not None else (os.cpu_count() or 1))
    summary.figures_drawn += len(jobs)
    tables = overview_tables(frame, scenarios, scenario_runs, published)
    summary.index.write_text(
        env.get_template("index.html").render(
            title="clbench leaderboard",
            tables=tables,
            settings=list(dict.fromkeys(t["setting"] for t in tables)),
            setting_texts={t["setting"]: t["setting_text"] for t in tables},
            backbones=sorted(set(frame["backbone"])),
            kinds=sorted(set(frame["scenario_kind"])),
            scorers=sorted(set(frame["scorer"])),
            scenarios=listing,
            total_runs=len(results),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            home_href=None,
        )
    )
    (out / STAMP).write_text(
        json.dumps({"figures_version": FIGURES_VERSION, "scenario_figures": new_keys})
    )
    summary.seconds = time.perf_counter() - began
    return summary
