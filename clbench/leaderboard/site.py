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
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clbench.errors import ClbenchError
from clbench.leaderboard.front_page import index_row, overview_tables
from clbench.leaderboard.published import Published, load_published
from clbench.leaderboard.run_page import (
    METRIC_NAMES,
    RUN_FIGURES,
    environment,
    run_context,
    slug,
    write_report,
    write_run_page,
)
from clbench.leaderboard.scenario_page import json_script, scenario_page
from clbench.leaderboard.tables import runs_frame, scenario_board
from clbench.results import RunResult

__all__ = [
    "METRIC_NAMES",
    "json_script",
    "SiteSummary",
    "build_site",
    "environment",
    "run_context",
    "slug",
    "write_report",
    "write_run_page",
]

# Bump when figures change look, so reused PNGs from an older build are redrawn.
FIGURES_VERSION = "3"
STAMP = ".clbench-site.json"


@dataclass
class SiteSummary:
    out: Path
    index: Path
    scenario_pages: dict[str, Path] = field(default_factory=dict)
    run_pages: dict[str, Path] = field(default_factory=dict)
    figures_drawn: int = 0
    figures_reused: int = 0
    seconds: float = 0.0


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


def _figure_key(args: tuple) -> str:
    """What a scenario PNG shows, hashed: unchanged inputs mean an unchanged PNG."""
    text = json.dumps(args, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
    return hashlib.sha256(f"{FIGURES_VERSION}:{text}".encode()).hexdigest()


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
        listing.append(index_row(scenario, board, int((frame["scenario"] == scenario).sum())))

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
