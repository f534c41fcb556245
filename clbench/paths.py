"""Where clbench keeps caches and results (all overridable by environment)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

# A run's --data-root: set for the duration of building its scenario (``using_data_root``),
# so readers find the data without the CLI rewriting the process environment.
_DATA_ROOT: ContextVar[Path | None] = ContextVar("clbench_data_root", default=None)


def cache_root() -> Path:
    """Downloads, converted weights and the feature cache: ``$CLBENCH_CACHE``."""
    base = (
        os.environ.get("CLBENCH_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clbench"
    )
    return Path(base)


def features_root() -> Path:
    """The on-disk feature cache: ``$CLBENCH_FEATURES``, else ``features/`` in the cache."""
    return Path(os.environ.get("CLBENCH_FEATURES", cache_root() / "features"))


def checkpoints_root() -> Path:
    """Per-task checkpoints of unfinished runs: ``$CLBENCH_CHECKPOINTS``, else in the cache."""
    return Path(os.environ.get("CLBENCH_CHECKPOINTS", cache_root() / "checkpoints"))


def results_root() -> Path:
    """Stored RunResults: ``$CLBENCH_RESULTS``, else ``leaderboards/runs`` under the cwd."""
    return Path(os.environ.get("CLBENCH_RESULTS", Path("leaderboards") / "runs"))


def data_root() -> Path:
    """Standard benchmark datasets: the run's ``--data-root``, else ``$CLBENCH_DATA``, else
    ``data/`` in the cache."""
    explicit = _DATA_ROOT.get()
    if explicit is not None:
        return explicit
    return Path(os.environ.get("CLBENCH_DATA", cache_root() / "data"))


@contextmanager
def using_data_root(root: str | Path | None) -> Iterator[None]:
    """Readers inside the block look for datasets under ``root`` (no change when None)."""
    if root is None:
        yield
        return
    token = _DATA_ROOT.set(Path(root).expanduser())
    try:
        yield
    finally:
        _DATA_ROOT.reset(token)
