"""A grid point on its way to an executor: the spec as plain data, where it is
stored and where its log goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.runner import RunSpec
from clbench.sweep.execute import Outcome, describe


@dataclass(frozen=True)
class Job:
    spec: RunSpec
    store_root: Path
    log: Path

    @property
    def key(self) -> str:
        return self.spec.key()

    def arguments(self, threads: int, plugins: Sequence[str]) -> tuple[Any, ...]:
        """``execute_point``'s arguments: plain data, picklable for any process."""
        spec = {name: getattr(self.spec, name) for name in self.spec.__dataclass_fields__}
        return spec, str(self.store_root), str(self.log), threads, tuple(plugins)

    def failed(self, reason: str, attempts: int) -> Outcome:
        return Outcome(self.key, describe(self.spec), "failed", reason=reason, attempts=attempts)


def log_name(spec: RunSpec) -> str:
    """``emoji-cil-knn-s1994-<key>.log``: readable, and unique per spec."""
    from clbench.results import _id_part

    return f"{_id_part(spec.scenario)}-{_id_part(spec.method)}-s{spec.seed}-{spec.key()}.log"
