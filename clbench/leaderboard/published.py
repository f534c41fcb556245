"""Published reference numbers (never measured by clbench), for display only.

``published.csv`` is written by hand from the anchor table of PROTOCOLS.md:
one row per (scenario, method) with Ā and last accuracy in percent and the
source. ``scenario`` and ``method`` hold ``;``-separated names a clbench
preset or method may carry; a row applies to a run only when the run's
protocol (init_cls, increment), where recorded, is the published one.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from clbench.errors import ConfigError

COLUMNS = (
    "scenario",
    "init_cls",
    "increment",
    "method",
    "method_label",
    "backbone",
    "avg_acc",
    "last_acc",
    "source",
)


def normalize(name: str) -> str:
    """``CODA-Prompt``, ``coda_prompt`` and ``codaprompt`` are one name."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Published:
    scenarios: tuple[str, ...]
    init_cls: int | None
    increment: int | None
    methods: tuple[str, ...]
    method_label: str
    backbone: str
    avg_acc: float | None
    last_acc: float | None
    source: str

    def applies_to(self, scenario: str, protocol: dict) -> bool:
        if normalize(scenario) not in self.scenarios:
            return False
        for key in ("init_cls", "increment"):
            ours, theirs = protocol.get(key), getattr(self, key)
            if ours is not None and theirs is not None and int(ours) != theirs:
                return False
        return True

    def names_method(self, method: str) -> bool:
        return normalize(method) in self.methods


def _number(text: str, kind: type, where: str) -> float | int | None:
    """An empty cell is unknown (None); anything else must parse."""
    if not text.strip():
        return None
    try:
        return kind(text)
    except ValueError as exc:
        raise ConfigError(f"published-numbers file: {where} is {text!r}, not a number") from exc


def load_published(path: Path | None = None) -> list[Published]:
    source = path or resources.files("clbench.leaderboard").joinpath("published.csv")
    opener = resources.as_file(source) if path is None else nullcontext(Path(path))
    with opener as file:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ConfigError(
            f"published-numbers file {source} lacks columns {sorted(missing)}",
            f"its header must be {','.join(COLUMNS)}",
        )
    return [
        Published(
            scenarios=tuple(normalize(s) for s in row.scenario.split(";")),
            init_cls=_number(row.init_cls, int, "init_cls"),
            increment=_number(row.increment, int, "increment"),
            methods=tuple(normalize(m) for m in row.method.split(";")),
            method_label=row.method_label,
            backbone=row.backbone,
            avg_acc=_number(row.avg_acc, float, "avg_acc"),
            last_acc=_number(row.last_acc, float, "last_acc"),
            source=row.source,
        )
        for row in frame.itertuples(index=False)
    ]


def published_for(entries: list[Published], scenario: str, protocol: dict) -> list[Published]:
    """The published rows that apply to a scenario (by preset name and protocol)."""
    return [e for e in entries if e.applies_to(scenario, protocol)]
