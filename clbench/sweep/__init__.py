"""Sweeps: a grid of ordinary runs, on local worker processes or a Ray cluster.

Every grid point is one ``clbench.runner.run`` of its RunSpec and leaves one
ordinary RunResult. A point whose spec key (``config["spec_key"]``) a stored
record already carries is skipped, so an interrupted sweep started again runs
only what is missing, and running a finished sweep again runs nothing.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clbench.errors import ConfigError
from clbench.results import ResultsStore
from clbench.runner import RunSpec
from clbench.sweep.execute import Outcome, describe
from clbench.sweep.grid import Grid, validate
from clbench.sweep.jobs import Job, log_name

__all__ = ["Grid", "Outcome", "SweepSummary", "available_cores", "run_sweep", "stored_keys"]


@dataclass
class SweepSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_seconds: float | None = None
    """This process and its waited-for children (local workers); None on Ray."""
    log_dir: Path | None = None
    interrupted: bool = False

    def by_status(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def stored_keys(store: ResultsStore) -> set[str]:
    """The spec keys of the records in ``store`` (records from before spec keys
    were recorded have none and match nothing)."""
    keys = set()
    for path in store.paths():
        try:
            config = json.loads(path.read_text()).get("config", {})
        except (OSError, json.JSONDecodeError):
            continue  # not a record this sweep can match; `clbench results` reports it
        if config.get("spec_key"):
            keys.add(config["spec_key"])
    return keys


def run_sweep(
    points: Sequence[RunSpec],
    store: ResultsStore,
    log_dir: Path,
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    cpus_per_point: float | None = None,
    gpus_per_point: float = 0.0,
    retries: int = 1,
    rerun: bool = False,
    plugins: Sequence[str] = (),
    on_outcome: Callable[[Outcome, int, int], None] | None = None,
) -> SweepSummary:
    """Run every point not yet stored (all with ``rerun``) and summarise.

    Locally, ``workers`` processes (default: one per core) run ``threads`` intra-op
    threads each (default: cores // workers, at least 1). On Ray every point asks
    for ``cpus_per_point`` CPUs (default ``threads``) and ``gpus_per_point`` GPUs.
    """
    if retries < 0:
        raise ConfigError(f"--retries {retries} is negative", "use 0 for no retries")
    cores = available_cores()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: need at least one", "write --workers 2")
    workers = workers or cores
    threads = threads or max(1, cores // workers)
    for module in plugins:  # the driver validates plugin methods too
        __import__(module)
    validate(points)
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    summary = SweepSummary(log_dir=log_dir)
    done_before = set() if rerun else stored_keys(store)
    jobs = []
    for spec in points:
        if spec.key() in done_before:
            summary.outcomes.append(Outcome(spec.key(), describe(spec), "skipped"))
        else:
            job = Job(spec, store.root, log_dir / log_name(spec))
            job.log.unlink(missing_ok=True)  # a fresh log per sweep; attempts append to it
            jobs.append(job)
    total = len(jobs)

    def record(outcome: Outcome) -> None:
        summary.outcomes.append(outcome)
        if on_outcome is not None:
            finished = len(summary.outcomes) - (len(points) - total)
            on_outcome(outcome, finished, total)

    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if jobs and ray_address is not None:
            from clbench.sweep.ray_executor import run_ray

            cpus = cpus_per_point if cpus_per_point is not None else threads
            run_ray(jobs, ray_address, cpus, gpus_per_point, threads, retries, record, plugins)
        elif jobs:
            from clbench.sweep.local import run_local

            run_local(jobs, min(workers, len(jobs)), threads, retries, record, plugins)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.wall_seconds = time.perf_counter() - began
    if ray_address is None:  # Ray's workers are not this process's children
        summary.cpu_seconds = _cpu_seconds() - cpu_began
    return summary


def _cpu_seconds() -> float:
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)
