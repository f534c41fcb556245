"""The static leaderboard site and single-run reports, built from RunResults only.

Layout of a site (every link relative, so it works opened from disk)::

    index.html                      scenarios, with run counts and the best method
    scenarios/<scenario>.html       sortable leaderboard, comparison figure, all runs
    scenarios/<scenario>.png        every method's accuracy-after-each-task curve
    runs/<run>/index.html           one run: figures, matrix, metrics, config, manifest
    runs/<run>/{heatmap,curve,bars}.png

Pages come from jinja2 templates with autoescaping on, so every string from a
record (method names, config values) reaches the HTML as text. Tables come
from ``tables.py`` (pandas), figures from ``figures.py`` (matplotlib). Stored
records never change, so a run's PNGs already in the output folder are reused
(``reuse=False`` redraws them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from clbench.leaderboard import figures
from clbench.leaderboard.published import Published, load_published, published_for
from clbench.leaderboard.tables import (
    BOARD_COLUMNS,
    GROUP_KEYS,
    latest_per_seed,
    mean_spread_text,
    runs_frame,
    scenario_board,
)
from clbench.results import RunResult

# Bump when figures change look, so reused PNGs from an older build are redrawn.
FIGURES_VERSION = "1"
RUN_FIGURES = {"heatmap": figures.heatmap, "curve": figures.step_curve, "bars": figures.task_bars}

METRIC_NAMES = {
    "avg_acc_sample": "Ā, sample-weighted over seen tasks (PILOT/PyCIL)",
    "last_acc_sample": "last accuracy, sample-weighted (PILOT/PyCIL)",
    "avg_acc_task": "Ā, mean of per-task accuracies (Mammoth)",
    "last_acc_task": "last accuracy, mean of per-task accuracies (Mammoth)",
    "forgetting_pilot": "forgetting, PILOT (max over all steps, last included)",
    "forgetting_chaudhry": "forgetting, Chaudhry et al. (max over earlier steps)",
    "forgetting_avalanche": "forgetting, Avalanche (right after learning minus final)",
    "bwt": "backward transfer (BWT)",
    "fwt": "forward transfer (FWT)",
}


def slug(text: str) -> str:
    """A file name for any string: safe characters kept, a hash added whenever
    something was replaced, so two different names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80]
    if safe == text and safe:
        return safe
    return f"{safe or 'x'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("clbench.leaderboard", "templates"),
        autoescape=True,  # every template is HTML: no record string is trusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
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


# ---------------------------------------------------------------- figures


def _draw(job: tuple[str, RunResult, Path]) -> Path:
    kind, result, path = job
    return RUN_FIGURES[kind](result, path)


def draw_run_figures(jobs: list[tuple[str, RunResult, Path]], workers: int) -> None:
    """Draw figures, in worker processes when there are many (matplotlib is
    single-threaded and a PNG costs tens of milliseconds)."""
    if workers <= 1 or len(jobs) < 12:
        for job in jobs:
            _draw(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_draw, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _figures_are_current(out: Path) -> bool:
    stamp = out / ".clbench-site.json"
    return (
        stamp.exists() and json.loads(stamp.read_text()).get("figures_version") == FIGURES_VERSION
    )


# ---------------------------------------------------------------- run pages


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def run_context(
    result: RunResult,
    figure_files: dict[str, str],
    home_href: str | None,
    scenario_href: str | None,
) -> dict[str, Any]:
    """Everything a run page shows, as plain values for the template."""
    acc = figures.accuracy_percent(result)
    manifest = result.manifest or {}
    return {
        "result": result,
        "title": f"{result.method} on {result.scenario}",
        "home_href": home_href,
        "scenario_href": scenario_href,
        "figures": figure_files,
        "metrics": [(METRIC_NAMES.get(k, k), k, _pct(v)) for k, v in result.metrics.items()],
        "matrix": [[("-" if v != v else f"{v:.1f}") for v in row] for row in acc],
        "step_sample": [f"{v:.2f}" for v in figures.step_accuracy(result, "sample")],
        "costs": _costs(result),
        "versions": sorted((manifest.get("versions") or {}).items()),
        "manifest_items": [(k, v) for k, v in manifest.items() if k != "versions"],
        "config_json": json.dumps(result.config, indent=2, sort_keys=True, default=str),
        "extra_json": json.dumps(result.extra, indent=2, sort_keys=True, default=str)
        if result.extra
        else "",
    }


def _costs(result: RunResult) -> list[tuple[str, str]]:
    t, m = result.timings, result.peak_memory or {}

    def fmt(value, unit: str, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f} {unit}"

    return [
        ("wall time", fmt(t.get("total_seconds"), "s")),
        ("learning (sum over tasks)", fmt(sum(t.get("learn_seconds") or [0]), "s", 2)),
        ("evaluation (sum over tasks)", fmt(sum(t.get("eval_seconds") or [0]), "s", 2)),
        ("feature extraction", fmt(t.get("feature_extraction_seconds"), "s", 2)),
        (
            "features extracted / from cache",
            f"{t.get('features_extracted', '-')} / {t.get('features_from_cache', '-')}",
        ),
        ("peak CPU memory (RSS)", fmt(m.get("cpu_rss_mb"), "MiB", 0)),
        ("peak GPU memory (allocated)", fmt(m.get("gpu_allocated_mb"), "MiB", 0)),
        (
            "trainable parameters per task",
            ", ".join(f"{p:,}" for p in result.trainable_parameters) or "-",
        ),
    ]


def write_run_page(
    env: jinja2.Environment,
    result: RunResult,
    folder: Path,
    home_href: str | None = None,
    scenario_href: str | None = None,
) -> Path:
    files = {kind: f"{kind}.png" for kind in RUN_FIGURES}
    page = folder / "index.html"
    page.write_text(
        env.get_template("run.html").render(**run_context(result, files, home_href, scenario_href))
    )
    return page


def write_report(result: RunResult, out: Path) -> Path:
    """``clbench report``: one run's page and PNGs in ``out/<run>/``."""
    folder = Path(out) / slug(result.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, draw in RUN_FIGURES.items():
        draw(result, folder / f"{kind}.png")
    return write_run_page(environment(), result, folder)


# ---------------------------------------------------------------- scenario pages


def _mean_curve(runs: Sequence[RunResult]) -> tuple[np.ndarray, np.ndarray]:
    curves = [figures.step_accuracy(r) for r in runs]
    length = min(len(c) for c in curves)
    stacked = np.stack([c[:length] for c in curves])
    std = stacked.std(axis=0, ddof=1) if len(curves) > 1 else np.full(length, np.nan)
    return stacked.mean(axis=0), std


def _published_text(entries: list[Published], method: str) -> tuple[str, str]:
    """The published column of one board row: numbers and their source."""
    mine = [e for e in entries if e.names_method(method)]
    if not mine:
        return "", ""
    e = mine[0]
    numbers = " / ".join("-" if v is None else f"{v:.2f}" for v in (e.avg_acc, e.last_acc))
    return f"{numbers} ({e.backbone})", e.source


def board_rows(
    board: pd.DataFrame, published: list[Published], run_links: dict[str, str]
) -> list[dict]:
    rows = []
    for rec in board.to_dict("records"):
        cells = [
            {
                "text": mean_spread_text(rec[f"{col}_mean"], rec[f"{col}_std"], digits),
                "sort": ""
                if rec[f"{col}_mean"] != rec[f"{col}_mean"]
                else f"{rec[f'{col}_mean']:.6g}",
            }
            for col, _, digits in BOARD_COLUMNS
        ]
        pub_text, pub_source = _published_text(published, rec["method"])
        rows.append(
            {
                **{k: rec[k] for k in GROUP_KEYS},
                "seeds": rec["seeds"],
                "cells": cells,
                "runs": [
                    (seed, run_links[run_id])
                    for run_id, seed in zip(rec["run_ids"], rec["run_seeds"], strict=True)
                ],
                "published": pub_text,
                "published_source": pub_source,
            }
        )
    return rows


def write_scenario_page(
    env: jinja2.Environment,
    out: Path,
    scenario: str,
    board: pd.DataFrame,
    frame: pd.DataFrame,
    by_id: dict[str, RunResult],
    published: list[Published],
) -> Path:
    page = out / "scenarios" / f"{slug(scenario)}.html"
    runs = frame[frame["scenario"] == scenario]
    first = by_id[runs["run_id"].iloc[0]]
    entries = published_for(
        published, first.scenario, first.config.get("scenario", {}).get("protocol", {})
    )
    run_links = {rid: f"../runs/{slug(rid)}/index.html" for rid in runs["run_id"]}

    curves = []
    for rec in board.to_dict("records"):
        label = " ".join(
            x for x in (rec["method"], rec["method_options"], f"[{rec['backbone']}]") if x
        )
        mean, std = _mean_curve([by_id[r] for r in rec["run_ids"]])
        curves.append((label, mean, std))
    figure = page.with_suffix(".png")
    figures.comparison(curves, f"{scenario}: accuracy after each task", figure)

    latest = set(latest_per_seed(runs)["run_id"])
    page.write_text(
        env.get_template("scenario.html").render(
            title=f"{scenario} leaderboard",
            scenario=scenario,
            kind=first.scenario_kind,
            protocol=json.dumps(
                first.config.get("scenario", {}).get("protocol", {}), sort_keys=True, default=str
            ),
            headers=[header for _, header, _ in BOARD_COLUMNS],
            rows=board_rows(board, entries, run_links),
            published=entries,
            figure=figure.name,
            all_runs=[
                {**rec, "href": run_links[rec["run_id"]], "superseded": rec["run_id"] not in latest}
                for rec in runs.iloc[::-1].to_dict("records")
            ],
            home_href="../index.html",
        )
    )
    return page


# ---------------------------------------------------------------- the site


def _draw_missing_figures(
    results: Sequence[RunResult], out: Path, reuse: bool, workers: int, summary: SiteSummary
) -> None:
    jobs = []
    for result in results:
        folder = out / "runs" / slug(result.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in RUN_FIGURES:
            png = folder / f"{kind}.png"
            if reuse and png.exists():
                summary.figures_reused += 1
            else:
                jobs.append((kind, result, png))
    draw_run_figures(jobs, workers)
    summary.figures_drawn += len(jobs)


def _index_row(scenario: str, board: pd.DataFrame, runs: int) -> dict[str, Any]:
    best = board.iloc[0]
    return {
        "name": scenario,
        "href": f"scenarios/{slug(scenario)}.html",
        "runs": runs,
        "entries": len(board),
        "best": best["method"],
        "best_backbone": best["backbone"],
        "best_avg": mean_spread_text(best["avg_acc_sample_mean"], best["avg_acc_sample_std"], 2),
    }


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
    env = environment()
    published = load_published() if published is None else published
    frame = runs_frame(results)
    by_id = {r.run_id: r for r in results}
    summary = SiteSummary(out=out, index=out / "index.html")

    _draw_missing_figures(
        results,
        out,
        reuse and _figures_are_current(out),
        workers if workers is not None else (os.cpu_count() or 1),
        summary,
    )
    labels = dict(zip(frame["run_id"], frame["scenario"], strict=True))
    for result in results:
        summary.run_pages[result.run_id] = write_run_page(
            env,
            result,
            out / "runs" / slug(result.run_id),
            home_href="../../index.html",
            scenario_href=f"../../scenarios/{slug(labels[result.run_id])}.html",
        )

    overview = []
    for scenario in sorted(set(labels.values())):
        board = scenario_board(frame, scenario)
        summary.scenario_pages[scenario] = write_scenario_page(
            env, out, scenario, board, frame, by_id, published
        )
        summary.figures_drawn += 1  # the comparison figure changes with every new run: always drawn
        overview.append(_index_row(scenario, board, int((frame["scenario"] == scenario).sum())))
    summary.index.write_text(
        env.get_template("index.html").render(
            title="clbench leaderboard",
            scenarios=overview,
            total_runs=len(results),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            home_href=None,
        )
    )
    (out / ".clbench-site.json").write_text(json.dumps({"figures_version": FIGURES_VERSION}))
    summary.seconds = time.perf_counter() - began
    return summary
