"""RunResult records and the results store.

A RunResult is the whole truth about one run: what ran (scenario, method,
backbone, seed, full configuration, versions, commit, split hash, class order),
what it measured (correct counts, test counts, accuracy matrix, metrics,
timings, peak memory, trainable parameters) and method-specific logs. Records
are written atomically and never edited in place; everything else (leaderboard,
reports, regression checks) is a pure function of them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError

SCHEMA_VERSION = 1


@dataclass
class RunResult:
    run_id: str
    scenario: str
    scenario_kind: str
    method: str
    backbone: str
    seed: int
    config: dict[str, Any]
    manifest: dict[str, Any]
    split_hash: str
    class_order: list[int]
    task_classes: list[list[int]]
    correct_matrix: list[list[int | float | None]]
    """Score sums (row t: after learning task t); integer correct counts for 0/1 scorers."""
    test_counts: list[int]
    accuracy_matrix: list[list[float | None]]
    metrics: dict[str, float | None]
    timings: dict[str, Any]
    peak_memory: dict[str, float | None]
    trainable_parameters: list[int]
    task_incremental: bool = False
    evaluate_unseen: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    scorers: list[str] = field(default_factory=list)
    """Each task's scorer (``clbench.scoring``); records before it existed mean accuracy."""
    class_names: list[str] = field(default_factory=list)
    """Indexed by global label (``class_order[i]`` became label ``i``)."""
    schema_version: int = SCHEMA_VERSION

    @property
    def scorer(self) -> str:
        """The scorer its numbers are in: one name, or ``mixed`` (text streams may mix)."""
        names = sorted(set(self.scorers)) or ["accuracy"]
        return names[0] if len(names) == 1 else "mixed"

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _finite(value: Any) -> Any:
    """JSON has no NaN: store not-evaluated cells and undefined metrics as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _id_part(name: str) -> str:
    """A name as it may appear in a run id, which is also a file name."""
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", name).strip(".") or "_"


def new_run_id(scenario: str, method: str, seed: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    scenario, method = _id_part(scenario), _id_part(method)
    # 48 random bits: runs of one (scenario, method, seed) finishing in the same
    # second (a sweep on a cluster) must not collide, or the store refuses one.
    return f"{stamp}-{scenario}-{method}-s{seed}-{uuid.uuid4().hex[:12]}"


class ResultsStore:
    """A folder of RunResult JSON files, one per run, safe for concurrent writers.

    Each record goes to a temporary file in the same folder, is fsynced, then
    hard-linked to its final name, which fails instead of overwriting if that
    name exists: no reader ever sees half a record, and no record is replaced.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        if _id_part(run_id) != run_id:
            raise ClbenchError(
                f"run id {run_id!r} is not a plain file name",
                "run ids come from clbench.results.new_run_id",
            )
        return self.root / f"{run_id}.json"

    def write(self, result: RunResult) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(result.run_id)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.root)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(result.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError as exc:
                raise ClbenchError(
                    f"a run named {result.run_id} is already stored; not overwritten"
                ) from exc
        finally:
            os.unlink(tmp)
        _fsync_dir(self.root)
        return final

    def load(self, run_id: str) -> RunResult:
        path = self.path(run_id)
        if not path.exists():
            matches = [p for p in self.paths() if run_id in p.stem]
            if len(matches) != 1:
                raise ClbenchError(
                    f"no unique stored run matches {run_id!r} in {self.root}",
                    "`clbench results` lists stored runs",
                )
            path = matches[0]
        return read_result(path)

    def paths(self) -> list[Path]:
        """Every stored record, oldest name first. A writer's temporary file
        (``.tmp-*.json``, half-written or left by a killed process) is not a record:
        pathlib's glob matches dot-files, so they are skipped by name."""
        if not self.root.exists():
            return []
        return [p for p in sorted(self.root.glob("*.json")) if not p.name.startswith(".")]

    def all(self) -> list[RunResult]:
        return [read_result(p) for p in self.paths()]


def _fsync_dir(folder: Path) -> None:
    """Make the new name durable too: after a crash the record is there or absent."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_result(path: Path) -> RunResult:
    try:
        return RunResult.from_dict(json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ClbenchError(f"stored run {path} is not a valid RunResult: {exc}") from exc
