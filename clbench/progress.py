"""Progress bars that stay quiet in tests and pipes unless asked for."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    setting = os.environ.get("CLBENCH_PROGRESS")
    if setting is not None:
        return setting not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """``tqdm`` on stderr when progress is enabled (a terminal, or CLBENCH_PROGRESS=1)."""
    if not enabled():
        yield from iterable
        return
    yield from tqdm(
        iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True
    )
