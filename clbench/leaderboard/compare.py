"""Two stored runs side by side: accuracy matrices (and their difference),
metrics, configurations and manifests, every differing entry marked.

``compare_runs`` builds the comparison as plain values; ``clbench compare``
prints it as terminal tables and ``write_comparison`` as an HTML page (same
templates and escaping as the site).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clbench.leaderboard import figures
from clbench.leaderboard.run_page import METRIC_NAMES, environment
from clbench.leaderboard.tables import flatten, option_dict, scorer_of, short_label
from clbench.results import RunResult

# Manifest entries that differ between any two runs by nature: never "a difference".
ALWAYS_DIFFERENT = {"created_at", "hostname", "pid"}
ABSENT = "(absent)"


@dataclass
class Row:
    key: str
    a: str
    b: str
    delta: str = ""
    differs: bool = False


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return sum(r.differs for r in self.rows)


@dataclass
class Comparison:
    a: RunResult
    b: RunResult
    sections: list[Section]
    matrix_a: list[list[str]]
    matrix_b: list[list[str]]
    matrix_delta: list[list[tuple[str, float]]] | None
    """B - A per cell (text, value), or None when the two matrices differ in shape."""


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def _flat_section(title: str, a: dict, b: dict, ignore: set[str] = frozenset()) -> Section:
    fa, fb = flatten(a), flatten(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    return Section(
        title,
        [
            Row(
                key,
                _text(fa[key]) if key in fa else ABSENT,
                _text(fb[key]) if key in fb else ABSENT,
                differs=key not in ignore
                and (key not in fa or key not in fb or _text(fa[key]) != _text(fb[key])),
            )
            for key in keys
        ],
    )


def _identity(result: RunResult) -> dict[str, Any]:
    return {
        "run id": result.run_id,
        "scenario": result.scenario,
        "scenario kind": result.scenario_kind,
        "task id at test": result.task_incremental,
        "method": result.method,
        "label": short_label(result.method, option_dict(result)),
        "backbone": result.backbone,
        "seed": result.seed,
        "scorer": scorer_of(result),
        "tasks": len(result.test_counts),
        "split hash": result.split_hash,
        "class order": result.class_order,
    }


def _metrics(a: RunResult, b: RunResult) -> Section:
    rows = []
    for key in dict.fromkeys([*a.metrics, *b.metrics]):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        both = va is not None and vb is not None and va == va and vb == vb
        rows.append(
            Row(
                METRIC_NAMES.get(key, key),
                _pct(va),
                _pct(vb),
                delta=f"{100 * (vb - va):+.2f}" if both else "",
                differs=_pct(va) != _pct(vb),
            )
        )
    ta, tb = a.timings.get("total_seconds"), b.timings.get("total_seconds")
    rows.append(
        Row(
            "wall time (s)",
            _text(None if ta is None else round(ta, 1)),
            _text(None if tb is None else round(tb, 1)),
            delta=f"{tb - ta:+.1f}" if ta is not None and tb is not None else "",
            differs=False,  # times always differ a little; the delta says by how much
        )
    )
    pa, pb = (r.trainable_parameters[-1] if r.trainable_parameters else None for r in (a, b))
    rows.append(Row("trainable parameters (last task)", _text(pa), _text(pb), differs=pa != pb))
    return Section("Metrics (%)", rows)


def _matrix_text(result: RunResult) -> list[list[str]]:
    return [
        ["-" if v != v else f"{v:.1f}" for v in row] for row in figures.accuracy_percent(result)
    ]


def compare_runs(a: RunResult, b: RunResult) -> Comparison:
    acc_a, acc_b = figures.accuracy_percent(a), figures.accuracy_percent(b)
    delta = None
    if acc_a.shape == acc_b.shape:
        diff = acc_b - acc_a
        delta = [[("-" if v != v else f"{v:+.1f}", float(v)) for v in row] for row in diff]
    manifest_a = {k: v for k, v in (a.manifest or {}).items()}
    manifest_b = {k: v for k, v in (b.manifest or {}).items()}
    return Comparison(
        a=a,
        b=b,
        sections=[
            _flat_section("Run", _identity(a), _identity(b), ignore={"run id"}),
            _metrics(a, b),
            _flat_section("Configuration", a.config, b.config),
            _flat_section("Manifest", manifest_a, manifest_b, ignore=ALWAYS_DIFFERENT),
        ],
        matrix_a=_matrix_text(a),
        matrix_b=_matrix_text(b),
        matrix_delta=delta,
    )


def write_comparison(comparison: Comparison, path: Path) -> Path:
    """The comparison as one self-contained HTML page (no script, no images)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a, b = comparison.a, comparison.b
    path.write_text(
        environment()
        .get_template("compare.html")
        .render(
            title=f"{a.method} ({a.run_id}) vs {b.method} ({b.run_id})",
            c=comparison,
            delta_class=_delta_class,
            home_href=None,
        )
    )
    return path


def _delta_class(value: float) -> str:
    if not np.isfinite(value) or abs(value) < 0.05:
        return ""
    return "better" if value > 0 else "worse"
