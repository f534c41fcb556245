"""One grid point in a worker process (a local pool worker or a Ray task).

A point is an ordinary ``clbench.runner.run`` of its RunSpec; the worker
writes the RunResult into the store itself, so a sweep's results survive the
driver. Everything the run prints goes to the point's own log file, one
``--- attempt N`` section per try. A ``ClbenchError`` (missing data, bad
option) would fail the same way again, so it is returned as a failure; any
other exception is raised for the executor to retry.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ATTEMPT_MARK = "--- attempt "


@dataclass
class Outcome:
    """What became of one grid point."""

    key: str
    label: str
    status: str  # "done", "skipped" or "failed"
    run_id: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    attempts: int = 0


def describe(spec: Any) -> str:
    """``knn on emoji-cil, efficientnet-lite0, seed 1994 [k=5]``: a point in one line."""
    options = [f"{k}={v}" for k, v in sorted(spec.method_options.items())]
    options += [f"scenario.{k}={v}" for k, v in sorted(spec.scenario_options.items())]
    extra = f" [{' '.join(options)}]" if options else ""
    backbone = spec.backbone or "default backbone"
    return f"{spec.method} on {spec.scenario}, {backbone}, seed {spec.seed}{extra}"


def one_line(exc: BaseException) -> str:
    """An exception as the summary shows it: its type and first message line."""
    message = getattr(exc, "message", None) or str(exc)
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def configure_worker(threads: int, plugins: Sequence[str] = ()) -> None:
    """Threads per worker so that workers x threads fits the cores, quiet progress
    bars (logs are files), and the user's plugin modules (their own
    ``@register_method`` definitions) imported."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["CLBENCH_PROGRESS"] = "0"
    import torch

    torch.set_num_threads(threads)
    for module in plugins:
        importlib.import_module(module)


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[int]:
    """Send this process's stdout and stderr (file descriptors too, so C-level and
    child output) to ``log``, appending; yields the attempt number."""
    log.parent.mkdir(parents=True, exist_ok=True)
    attempt = 1 + (log.read_text(errors="replace").count(ATTEMPT_MARK) if log.exists() else 0)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", buffering=1) as handle:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        handle.write(f"{ATTEMPT_MARK}{attempt} (pid {os.getpid()}, {stamp})\n")
        handle.flush()
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield attempt
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def execute_point(
    spec_data: dict[str, Any],
    store_root: str,
    log_path: str,
    threads: int,
    plugins: Sequence[str] = (),
) -> Outcome:
    """Run one point and store its RunResult; returns its Outcome (done, or a
    deterministic failure), raises on anything worth retrying."""
    configure_worker(threads, plugins)
    from clbench.errors import ClbenchError
    from clbench.results import ResultsStore
    from clbench.runner import RunSpec, run

    spec = RunSpec(**spec_data)
    began, cpu = time.perf_counter(), time.process_time()
    with output_to(Path(log_path)) as attempt:
        print(f"clbench sweep: {describe(spec)} (key {spec.key()})", flush=True)

        def outcome(status: str, **fields: Any) -> Outcome:
            return Outcome(
                spec.key(),
                describe(spec),
                status,
                seconds=time.perf_counter() - began,
                cpu_seconds=time.process_time() - cpu,
                attempts=attempt,
                **fields,
            )

        try:
            # resume=True: a point interrupted mid-run (a killed sweep, a lost Ray
            # node) continues from its last finished task's checkpoint.
            result = run(spec, store=ResultsStore(Path(store_root)), resume=True)
        except ClbenchError as exc:
            print(f"clbench: error: {exc}", flush=True)
            return outcome("failed", reason=one_line(exc))
        except BaseException:
            traceback.print_exc()
            raise
        print(f"stored {result.run_id}", flush=True)
        return outcome("done", run_id=result.run_id)
