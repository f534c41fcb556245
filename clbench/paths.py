"""Where clbench keeps caches and results (all overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Downloads, converted weights and the feature cache: ``$CLBENCH_CACHE``."""
    base = (
        os.environ.get("CLBENCH_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clbench"
    )
    return Path(base)


def results_root() -> Path:
    """Stored RunResults: ``$CLBENCH_RESULTS``, else ``leaderboards/runs`` under the cwd."""
    return Path(os.environ.get("CLBENCH_RESULTS", Path("leaderboards") / "runs"))


def data_root() -> Path:
    """Standard benchmark datasets: ``$CLBENCH_DATA``, else ``~/data``-style cache folder."""
    return Path(os.environ.get("CLBENCH_DATA", cache_root() / "data"))
