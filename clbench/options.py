"""Parsing ``--set key=value`` and config files into method/scenario options.

Core, not CLI: the regression gate reads ``--set`` items from expected.csv too.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from clbench.errors import ConfigError


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``[1,2]`` -> [1, 2], else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--set`` items into (method options, scenario options).

    ``key=value`` sets a method option, ``scenario.key=value`` a scenario option, and a
    dotted method key a field of a nested option: ``train.lr=0.01`` gives
    ``{"train": {"lr": 0.01}}`` (the method's TrainConfig).
    """
    method: dict[str, Any] = {}
    scenario: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--set {item!r} is not key=value",
                "write e.g. --set k=5, --set train.lr=0.01 or --set scenario.num_tasks=5",
            )
        if key.startswith("scenario."):
            scenario[key.removeprefix("scenario.")] = parse_value(value)
            continue
        *path, leaf = key.removeprefix("method.").split(".")
        table = method
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a table of options")
        table[leaf] = parse_value(value)
    return method, scenario


def merge_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, table by table: ``--set train.lr=...`` keeps the
    config file's other ``[method.train]`` entries."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_options(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config(path: str) -> dict[str, Any]:
    """A TOML or JSON file with optional [run], [method] and [scenario] tables."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = (
            tomllib.loads(file.read_text())
            if file.suffix == ".toml"
            else json.loads(file.read_text())
        )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {file} does not parse: {exc}") from exc
    unknown = set(data) - {"run", "method", "scenario"}
    if unknown:
        raise ConfigError(
            f"config file {file} has unknown sections {sorted(unknown)}",
            "use [run], [method] and [scenario]",
        )
    return data
