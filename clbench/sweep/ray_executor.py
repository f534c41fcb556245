"""The Ray executor: each grid point one Ray task with its CPUs and GPUs declared.

Ray is an optional extra (``pip install 'clbench[ray]'``) imported only here.
Ray does the scheduling and the retries: a task that raises, or whose worker
or node dies, is run again up to ``retries`` times. Tasks write their
RunResults into the store themselves, so on a cluster the results folder (and
``$CLBENCH_CACHE`` / ``$CLBENCH_DATA``) must be on a file system every node
shares; the features and results stores are safe for concurrent writers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clbench.errors import ConfigError
from clbench.sweep.execute import Outcome, execute_point, one_line
from clbench.sweep.jobs import Job


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--ray needs the optional Ray extra, which is not installed",
            "pip install 'clbench[ray]' (or run without --ray for local worker processes)",
        ) from exc
    return ray


def run_ray(
    jobs: Sequence[Job],
    address: str,
    cpus: float,
    gpus: float,
    threads: int,
    retries: int,
    on_outcome: Callable[[Outcome], None],
    plugins: Sequence[str] = (),
) -> None:
    """Submit every job as a task and report each outcome as it arrives.

    ``address`` is ``auto`` (a cluster Ray finds through ``$RAY_ADDRESS`` or on
    this machine, else a new local one) or a cluster address. An already
    initialised Ray (a caller's ``ray.init``) is used as it is and left running.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address == "auto" else address, include_dashboard=False)
        started = True
    task = ray.remote(execute_point).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_retries=retries,  # worker or node died
        retry_exceptions=True,  # the run raised (execute_point returns deterministic failures)
        name="clbench-sweep-point",
    )
    refs = {task.remote(*job.arguments(threads, plugins)): job for job in jobs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                job = refs.pop(ref)
                try:
                    on_outcome(ray.get(ref))
                except Exception as exc:  # every attempt failed
                    cause = getattr(exc, "cause", None) or exc
                    on_outcome(job.failed(one_line(cause), retries + 1))
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
