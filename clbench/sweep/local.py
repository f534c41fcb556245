"""The local executor: grid points in a pool of worker processes on this machine.

Workers are spawned (not forked: a forked torch with live threads can hang)
and kept for the whole sweep, so torch and timm are imported once per worker,
not once per point. At most ``workers`` points are in flight, so when a worker
dies (killed, out of memory) only the points it could have been running are
charged an attempt before the pool is rebuilt. A worker whose driver is killed
outright (SIGKILL, no chance to shut the pool down) exits within a second
instead of lingering as an orphan.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from clbench.sweep.execute import Outcome, configure_worker, execute_point, one_line
from clbench.sweep.jobs import Job


def start_worker(threads: int, plugins: Sequence[str]) -> None:
    """Pool initializer: exit with the driver, then set threads and import plugins."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # re-parented: the driver is gone
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="clbench-exit-with-driver", daemon=True).start()
    configure_worker(threads, plugins)


def run_local(
    jobs: Sequence[Job],
    workers: int,
    threads: int,
    retries: int,
    on_outcome: Callable[[Outcome], None],
    plugins: Sequence[str] = (),
) -> None:
    """Run every job, retrying each failure that raised up to ``retries`` times."""
    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=start_worker,
            initargs=(threads, tuple(plugins)),
        )

    pending = deque(jobs)
    running: dict[Future, Job] = {}
    tries = {job.key: 0 for job in jobs}
    pool = new_pool()
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.popleft()
                running[pool.submit(execute_point, *job.arguments(threads, plugins))] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                job = running.pop(future)
                tries[job.key] += 1
                try:
                    on_outcome(future.result())
                    continue
                except BrokenProcessPool:
                    broken, reason = True, "the worker process died (killed or out of memory)"
                except Exception as exc:  # the run raised: worth another try
                    reason = one_line(exc)
                if tries[job.key] <= retries:
                    pending.appendleft(job)
                else:
                    on_outcome(job.failed(reason, tries[job.key]))
            if broken:
                # Every future of a broken pool fails; the ones still listed get
                # their turn again without being charged (they may not have started).
                for future, job in running.items():
                    future.cancel()
                    pending.appendleft(job)
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
