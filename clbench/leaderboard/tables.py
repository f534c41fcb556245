"""The tables behind the leaderboard, as pandas DataFrames built from RunResults.

``runs_frame`` is the tidy table (one row per stored run, one column per
variable) that ``clbench results`` prints and exports; ``scenario_board``
aggregates it into the leaderboard of one scenario (one row per method,
method options and backbone; mean and sample standard deviation over seeds).
Accuracy-type metrics are in percent (the stored fraction x 100), the unit of
``leaderboards/expected.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from clbench.results import RunResult

PERCENT_METRICS = (
    "avg_acc_sample",
    "last_acc_sample",
    "avg_acc_task",
    "last_acc_task",
    "forgetting_pilot",
    "forgetting_chaudhry",
    "forgetting_avalanche",
    "bwt",
    "fwt",
)

RUN_COLUMNS = (
    "run_id",
    "created_at",
    "scenario",
    "scenario_name",
    "scenario_kind",
    "method",
    "method_options",
    "backbone",
    "seed",
    "num_tasks",
    *PERCENT_METRICS,
    "trainable_parameters",
    "wall_seconds",
    "peak_rss_mb",
    "peak_gpu_mb",
    "split_hash",
    "git_commit",
)

# The leaderboard's columns: (frame column, header, digits). The accuracy
# convention (sample-weighted, PILOT/PyCIL) and the forgetting convention are
# part of the header so nobody compares numbers of different conventions.
BOARD_COLUMNS = (
    ("avg_acc_sample", "Ā (%, sample-weighted)", 2),
    ("last_acc_sample", "last (%, sample-weighted)", 2),
    ("forgetting_pilot", "forgetting (%, PILOT)", 2),
    ("bwt", "BWT (%)", 2),
    ("trainable_parameters", "trainable params (last task)", 0),
    ("wall_seconds", "wall time (s)", 1),
    ("peak_rss_mb", "peak memory (MiB, CPU RSS)", 0),
)
GROUP_KEYS = ["method", "method_options", "backbone"]


def options_text(options: dict[str, Any]) -> str:
    """``k=5 metric=cosine``: a stable one-line form of a configuration dict."""
    return " ".join(
        f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in sorted(options.items())
    )


def scenario_label(result: RunResult) -> str:
    """The scenario's name, plus any scenario option the run set: runs of
    ``emoji-cil`` with ``num_tasks=5`` are another protocol, not more seeds. A
    scenario ``seed`` equal to the run's seed (a sweep's default: the seed sets
    the class order too, as in PILOT) is the seed axis, not a protocol."""
    options = {
        k: v
        for k, v in result.config.get("scenario", {}).items()
        if k not in ("name", "protocol") and not (k == "seed" and v == result.seed)
    }
    return f"{result.scenario} ({options_text(options)})" if options else result.scenario


def method_options(result: RunResult) -> str:
    return options_text({k: v for k, v in result.config.get("method", {}).items() if k != "name"})


def _percent(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def run_row(result: RunResult) -> dict[str, Any]:
    """One stored run as a flat row of the tidy table."""
    metrics = result.metrics
    peak = result.peak_memory or {}
    return {
        "run_id": result.run_id,
        "created_at": result.manifest.get("created_at"),
        "scenario": scenario_label(result),
        "scenario_name": result.scenario,
        "scenario_kind": result.scenario_kind,
        "method": result.method,
        "method_options": method_options(result),
        "backbone": result.backbone,
        "seed": result.seed,
        "num_tasks": len(result.test_counts),
        **{m: _percent(metrics.get(m)) for m in PERCENT_METRICS},
        "trainable_parameters": result.trainable_parameters[-1]
        if result.trainable_parameters
        else np.nan,
        "wall_seconds": result.timings.get("total_seconds", np.nan),
        "peak_rss_mb": peak.get("cpu_rss_mb") if peak.get("cpu_rss_mb") is not None else np.nan,
        "peak_gpu_mb": peak.get("gpu_allocated_mb")
        if peak.get("gpu_allocated_mb") is not None
        else np.nan,
        "split_hash": result.split_hash,
        "git_commit": result.manifest.get("git_commit"),
    }


def runs_frame(results: Iterable[RunResult]) -> pd.DataFrame:
    """The tidy table of stored runs, oldest first."""
    frame = pd.DataFrame([run_row(r) for r in results], columns=list(RUN_COLUMNS))
    return frame.sort_values(["created_at", "run_id"], kind="stable", ignore_index=True)


def latest_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Records are never edited, so a re-run of the same configuration and seed
    is a newer record: the newest one counts, older ones stay in the store."""
    return frame.drop_duplicates([*GROUP_KEYS, "scenario", "seed"], keep="last")


def scenario_board(frame: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One scenario's leaderboard: per method/options/backbone the mean and
    sample standard deviation (NaN for a single seed) of every board column,
    the number of seeds and the run ids, best Ā first."""
    runs = latest_per_seed(frame[frame["scenario"] == scenario])
    values = [c for c, _, _ in BOARD_COLUMNS]
    grouped = runs.groupby(GROUP_KEYS, sort=False, dropna=False)
    board = grouped[values].agg(["mean", "std"])
    board.columns = [f"{col}_{stat}" for col, stat in board.columns]
    board["seeds"] = grouped["seed"].nunique()
    board["run_ids"] = grouped["run_id"].agg(list)
    board["run_seeds"] = grouped["seed"].agg(list)
    board = board.reset_index()
    return board.sort_values(
        "avg_acc_sample_mean", ascending=False, kind="stable", ignore_index=True
    )


def mean_spread_text(mean: float, std: float, digits: int) -> str:
    """``50.53 ± 0.41`` with several seeds, ``50.53`` with one, ``-`` when undefined."""
    if mean != mean:
        return "-"
    text = f"{mean:,.{digits}f}"
    return text if std != std else f"{text} ± {std:,.{digits}f}"
