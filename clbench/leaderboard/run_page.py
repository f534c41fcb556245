"""One run's page: identity, figures, metrics, accuracy matrix, costs, classes
(ids with their names), scorer, example outputs of text tasks, manifest and
configuration. Used by the site (``runs/<run>/index.html``) and ``clbench report``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jinja2

from clbench.leaderboard import figures
from clbench.leaderboard.tables import option_dict, scorer_of, short_label
from clbench.results import RunResult

RUN_FIGURES = {"heatmap": figures.heatmap, "curve": figures.step_curve, "bars": figures.task_bars}
# At most this many example outputs per task, and in all: a page is for reading.
EXAMPLES_PER_TASK = 3
EXAMPLES_IN_ALL = 24

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


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def task_scorers(result: RunResult) -> list[str]:
    """The scorer of each task: a per-task list when the record holds one, else
    the run's single scorer for every task."""
    stored = result.scorers
    n = len(result.test_counts)
    if isinstance(stored, list | tuple) and len(stored) == n:
        return [str(s) for s in stored]
    return [scorer_of(result)] * n


def class_rows(result: RunResult) -> list[dict[str, Any]]:
    """Per label: its dataset class id, its name (when the record has names) and task."""
    task_of = {c: t for t, classes in enumerate(result.task_classes) for c in classes}
    names = result.class_names or []
    return [
        {
            "label": label,
            "class_id": class_id,
            "name": names[label] if label < len(names) else "",
            "task": task_of.get(label, "-"),
        }
        for label, class_id in enumerate(result.class_order)
    ]


def task_rows(result: RunResult) -> list[dict[str, Any]]:
    names = result.class_names or []
    scorers = task_scorers(result)
    return [
        {
            "index": t,
            "classes": [(c, names[c] if c < len(names) else "") for c in classes],
            "scorer": scorers[t] if t < len(scorers) else "accuracy",
            "test_samples": result.test_counts[t] if t < len(result.test_counts) else "-",
        }
        for t, classes in enumerate(result.task_classes)
    ]


def examples(result: RunResult) -> list[dict[str, str]]:
    """A few stored example outputs (``extra["examples"]``: task, prompt, output,
    reference), at most EXAMPLES_PER_TASK per task; malformed entries are skipped."""
    stored = result.extra.get("examples") if isinstance(result.extra, dict) else None
    if not isinstance(stored, list):
        return []
    picked: list[dict[str, str]] = []
    per_task: dict[str, int] = {}
    for item in stored:
        if not isinstance(item, dict):
            continue
        task = str(item.get("task", "-"))
        if per_task.get(task, 0) >= EXAMPLES_PER_TASK:
            continue
        per_task[task] = per_task.get(task, 0) + 1
        picked.append(
            {k: str(item.get(k, "")) for k in ("prompt", "output", "reference")} | {"task": task}
        )
        if len(picked) >= EXAMPLES_IN_ALL:
            break
    return picked


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


def run_context(
    result: RunResult,
    figure_files: dict[str, str],
    home_href: str | None,
    scenario_href: str | None,
) -> dict[str, Any]:
    """Everything a run page shows, as plain values for the template."""
    acc = figures.accuracy_percent(result)
    manifest = result.manifest or {}
    extra = {k: v for k, v in (result.extra or {}).items() if k != "examples"}
    return {
        "result": result,
        "title": f"{result.method} on {result.scenario}",
        "label": short_label(result.method, option_dict(result)),
        "scorer": scorer_of(result),
        "home_href": home_href,
        "scenario_href": scenario_href,
        "figures": figure_files,
        "metrics": [(METRIC_NAMES.get(k, k), k, _pct(v)) for k, v in result.metrics.items()],
        "matrix": [[("-" if v != v else f"{v:.1f}") for v in row] for row in acc],
        "step_sample": [f"{v:.2f}" for v in figures.step_accuracy(result, "sample")],
        "costs": _costs(result),
        "classes": class_rows(result),
        "has_class_names": bool(result.class_names),
        "tasks": task_rows(result),
        "examples": examples(result),
        "warnings": [str(w) for w in (result.extra or {}).get("warnings") or []],
        "versions": sorted((manifest.get("versions") or {}).items()),
        "manifest_items": [(k, v) for k, v in manifest.items() if k != "versions"],
        "config_json": json.dumps(result.config, indent=2, sort_keys=True, default=str),
        "extra_json": json.dumps(extra, indent=2, sort_keys=True, default=str) if extra else "",
    }


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
