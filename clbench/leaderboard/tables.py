"""The tables behind the leaderboard, as pandas DataFrames built from RunResults.

``runs_frame`` is the tidy table (one row per stored run, one column per
variable) that ``clbench results`` prints and exports; ``scenario_board``
aggregates it into the leaderboard of one scenario (one row per method,
method options and backbone; mean and sample standard deviation over seeds);
``overview`` into the methods x scenarios table of the front page.
Accuracy-type metrics are in percent (the stored fraction x 100), the unit of
``leaderboards/expected.csv``.

A method's short label is its name plus the options that differ from the
registered method's defaults (``aper peft=full epochs=5``): the full option
dump stays in ``method_options`` for the configuration view.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Iterable, Sequence
from functools import cache
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
    "label",
    "backbone",
    "task_incremental",
    "scorer",
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
GROUP_KEYS = ["method", "method_options", "backbone", "task_incremental"]
# The two accuracy conventions: (key, name, Ā column, last column).
CONVENTIONS = (
    ("sample", "sample-weighted (PILOT/PyCIL)", "avg_acc_sample", "last_acc_sample"),
    ("task", "task-averaged (Mammoth)", "avg_acc_task", "last_acc_task"),
)
# The two settings never mixed in one table: whether the test phase was told the task id.
SETTINGS = (
    (False, "class-incremental", "no task id at test (class- and domain-incremental)"),
    (True, "task-incremental", "task id given at test (task-incremental)"),
)


def options_text(options: dict[str, Any]) -> str:
    """``k=5 metric=cosine``: a stable one-line form of a configuration dict."""
    return " ".join(
        f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in sorted(options.items())
    )


def scenario_label(result: RunResult) -> str:
    """The scenario's name, plus any scenario option the run set: runs of
    ``emoji-cil`` with ``num_tasks=5`` are another protocol, not more seeds, and so are
    runs told the task id at test."""
    options = {
        k: v for k, v in result.config.get("scenario", {}).items() if k not in ("name", "protocol")
    }
    if result.task_incremental:  # a task-incremental run never shares a board with the others
        options["task_incremental"] = True
    return f"{result.scenario} ({options_text(options)})" if options else result.scenario


def option_dict(result: RunResult) -> dict[str, Any]:
    return {k: v for k, v in result.config.get("method", {}).items() if k != "name"}


def method_options(result: RunResult) -> str:
    return options_text(option_dict(result))


def flatten(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested options as dotted keys: ``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plain(value: Any) -> Any:
    """A default as the record stores it: dataclasses (a TrainConfig) become dicts,
    tuples lists, so a default compares equal to its JSON round trip."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@cache
def _defaults_json(method: str, options_json: str = "{}") -> str:
    from clbench.registry import METHODS

    try:
        factory = METHODS.get(method).factory
    except Exception:  # an unregistered name (a removed method, a test's): no defaults
        return "{}"
    params = inspect.signature(factory).parameters
    defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    if "train" in params and callable(getattr(factory, "default_train", None)):
        # A method's training defaults may depend on its other options (APER trains
        # peft=full at a smaller rate): ask a learner built with the run's options.
        options = {
            k: v for k, v in json.loads(options_json).items() if k in params and k != "train"
        }
        for attempt in (lambda: factory(**options), factory):
            try:
                defaults["train"] = attempt().default_train()
                break
            except Exception:  # options an older version accepted: try the plain defaults
                continue
    return json.dumps(_plain(defaults), sort_keys=True, default=str)


def method_defaults(method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registered method's constructor defaults (nested ``train`` included, as
    the method picks them for ``options``), flattened to dotted keys; empty for a
    name no method is registered under."""
    key = json.dumps(options or {}, sort_keys=True, default=str)
    return flatten(json.loads(_defaults_json(method, key)))


_MISSING = object()


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def short_label(method: str, options: dict[str, Any]) -> str:
    """``aper peft=full train.epochs=5``: the name and the options that differ from
    the registered defaults, in the order the record stores them.

    Records from before training options were nested store them flat
    (``epochs=5``): such a key is compared with ``train.<key>``, and a flat
    ``None`` there meant "the method's default", so it is left out."""
    defaults = method_defaults(method, options)
    flat = json.loads(json.dumps(flatten(options), default=str))
    changed = []
    for key, value in flat.items():
        default = defaults.get(key, defaults.get(f"train.{key}", _MISSING))
        if key not in defaults and f"train.{key}" in defaults and value is None:
            continue
        if default is _MISSING or default != value:
            changed.append(f"{key}={_value_text(value)}")
    return " ".join([method, *changed])


def unique_labels(entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """Labels for (short label, full options, backbone) entries that tell every
    entry apart: the backbone is added when labels collide, then a number."""
    labels = [label for label, _, _ in entries]
    if len(set(labels)) < len(labels):
        clash = {x for x in labels if labels.count(x) > 1}
        labels = [
            f"{label} [{backbone}]" if label in clash else label
            for label, (_, _, backbone) in zip(labels, entries, strict=True)
        ]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


def scorer_of(result: RunResult) -> str:
    """The scorer of a run's tasks (``accuracy`` for records older than per-task
    scorers); several distinct ones are joined with ``+`` in task order."""
    names = list(dict.fromkeys(str(s) for s in (getattr(result, "scorers", None) or [])))
    return "+".join(names) or "accuracy"


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
        "label": short_label(result.method, option_dict(result)),
        "backbone": result.backbone,
        "task_incremental": bool(result.task_incremental),
        "scorer": scorer_of(result),
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


def _grouped_stats(
    runs: pd.DataFrame, keys: list[str], values: list[str]
) -> tuple[pd.DataFrame, Any]:
    grouped = runs.groupby(keys, sort=False, dropna=False)
    stats = grouped[values].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    stats["seeds"] = grouped["seed"].nunique()
    stats["run_ids"] = grouped["run_id"].agg(list)
    stats["run_seeds"] = grouped["seed"].agg(list)
    return stats, grouped


def scenario_board(frame: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One scenario's leaderboard: per method/options/backbone the mean and
    sample standard deviation (NaN for a single seed) of every board column,
    the number of seeds and the run ids, best Ā first."""
    runs = latest_per_seed(frame[frame["scenario"] == scenario])
    values = [c for c, _, _ in BOARD_COLUMNS] + ["avg_acc_task", "last_acc_task"]
    board, grouped = _grouped_stats(runs, GROUP_KEYS, values)
    board["short_label"] = grouped["label"].first()
    board["scorer"] = grouped["scorer"].first()
    board = board.reset_index()
    board["label"] = unique_labels(
        list(zip(board["short_label"], board["method_options"], board["backbone"], strict=True))
    )
    return board.sort_values(
        "avg_acc_sample_mean", ascending=False, kind="stable", ignore_index=True
    )


def overview(frame: pd.DataFrame) -> pd.DataFrame:
    """The front page's table in long form: one row per (entry, scenario) with
    mean and standard deviation over seeds of Ā and last in both conventions.
    An entry is a method configuration on a backbone in one setting (task id
    given at test or not); its ``label`` is unique within its setting."""
    runs = latest_per_seed(frame)
    values = ["avg_acc_sample", "last_acc_sample", "avg_acc_task", "last_acc_task"]
    table, grouped = _grouped_stats(runs, [*GROUP_KEYS, "scenario"], values)
    table["label"] = grouped["label"].first()
    table["scorer"] = grouped["scorer"].first()
    table["scenario_kind"] = grouped["scenario_kind"].first()
    table = table.reset_index()
    table["short_label"] = table["label"]
    for setting in table["task_incremental"].unique():
        rows = table["task_incremental"] == setting
        entries = table.loc[rows, ["label", "method_options", "backbone"]].drop_duplicates()
        unique = dict(
            zip(
                map(tuple, entries.to_numpy().tolist()),
                unique_labels([tuple(e) for e in entries.to_numpy().tolist()]),
                strict=True,
            )
        )
        table.loc[rows, "label"] = [
            unique[(label, options, backbone)]
            for label, options, backbone in table.loc[
                rows, ["label", "method_options", "backbone"]
            ].to_numpy()
        ]
    return table


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher
    or equal score, one of them strictly), cheapest first. NaNs are never on it."""
    points = [
        (c, s, i) for i, (c, s) in enumerate(zip(costs, scores, strict=True)) if c == c and s == s
    ]
    front, best = [], float("-inf")
    for _cost, score, index in sorted(points, key=lambda p: (p[0], -p[1])):
        if score > best:
            front.append(index)
            best = score
    return front


def mean_spread_text(mean: float, std: float, digits: int) -> str:
    """``50.53 ± 0.41`` with several seeds, ``50.53`` with one, ``-`` when undefined."""
    if mean != mean:
        return "-"
    text = f"{mean:,.{digits}f}"
    return text if std != std else f"{text} ± {std:,.{digits}f}"
