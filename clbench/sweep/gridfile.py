"""GRID.toml: a sweep written down.

    methods = ["simplecil", "knn"]        # required
    scenarios = ["emoji-cil", "emoji-dil"]  # required
    backbones = ["efficientnet-lite0"]    # default: the offline default backbone
    seeds = 3                             # a count (1993, 1994, 1995) or a list
    seed_scope = "order"                  # or "training"; see clbench.sweep.grid

    [run]                                 # shared RunSpec fields
    image_size = 64

    [method]                              # options of every method; a list is an axis
    [method.knn]                          # options of one method
    k = [1, 5]

    [scenario]                            # options of every scenario
    [scenario.emoji-cil]
    num_tasks = [5, 10]

    [method_backbones]                    # per-method backbones replacing `backbones`
    sema = ["dinov2-vits14"]

A value that is itself a list (``expand_layers = [9, 10, 11]``) is written as a
list of one list: ``expand_layers = [[9, 10, 11]]``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from clbench.errors import ConfigError
from clbench.sweep.grid import Grid, parse_seeds, split_names

KEYS = {
    "methods",
    "scenarios",
    "backbones",
    "seeds",
    "seed_scope",
    "run",
    "method",
    "scenario",
    "method_backbones",
}


def read_grid(path: str | Path) -> Grid:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"grid file not found: {file}", "pass a GRID.toml (see `clbench sweep --help`)"
        )
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid file {file} does not parse: {exc}") from exc
    unknown = set(data) - KEYS
    if unknown:
        raise ConfigError(
            f"grid file {file} has unknown keys {sorted(unknown)}", f"use {', '.join(sorted(KEYS))}"
        )
    methods = split_names(data.get("methods"))
    scenarios = split_names(data.get("scenarios"))
    grid = Grid(
        methods=methods,
        scenarios=scenarios,
        seed_scope=data.get("seed_scope", "order"),
        method_options=per_name(data.get("method", {}), methods),
        scenario_options=per_name(data.get("scenario", {}), scenarios),
        method_backbones={
            m: split_names(b) for m, b in dict(data.get("method_backbones", {})).items()
        },
        run=dict(data.get("run", {})),
    )
    if "backbones" in data:
        grid.backbones = split_names(data["backbones"])
    if "seeds" in data:
        grid.seeds = parse_seeds(data["seeds"])
    return grid


def per_name(table: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Split a [method] / [scenario] table: sub-tables named after a grid entry
    apply to it alone, every other key to all (``"*"``)."""
    shared = {k: v for k, v in table.items() if not (k in names and isinstance(v, dict))}
    own = {k: dict(v) for k, v in table.items() if k in names and isinstance(v, dict)}
    return {"*": shared, **own}
