"""CPU seconds of every ``clbench.training.fit`` call of a method, beside the harness's wall time.

On a shared machine the wall time per step is inflated by the other jobs;
the process CPU time of the same calls (one thread) is not, or much less.
Used inside ``harness.timed_fit`` (which counts the steps).
"""

from __future__ import annotations

import contextlib
import importlib
import resource
import time


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (or of its finished children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def fit_cpu_seconds(method: str):
    """Yield a list that receives the process CPU seconds of each ``fit`` call of ``method``."""
    from clbench.registry import create_method

    names = {type(create_method(method)).__module__, "clbench.methods.adaptation"}
    modules = [m for m in map(importlib.import_module, sorted(names)) if hasattr(m, "fit")]
    seconds: list[float] = []
    owns = [(m, m.fit) for m in modules]

    def wrap(own):
        def fit(*args, **kwargs):
            began = time.process_time()
            try:
                return own(*args, **kwargs)
            finally:
                seconds.append(time.process_time() - began)

        return fit

    for module, own in owns:
        module.fit = wrap(own)
    try:
        yield seconds
    finally:
        for module, own in owns:
            module.fit = own
