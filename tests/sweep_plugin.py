"""A plugin module for sweep tests (``--plugin tests.sweep_plugin``): SimpleCIL
that fails its first attempt, the way a run on a flaky node does."""

from __future__ import annotations

import os
from pathlib import Path

from clbench.methods.frozen import SimpleCIL
from clbench.registry import register_method


@register_method("flaky-simplecil")
class FlakySimpleCIL(SimpleCIL):
    """SimpleCIL whose first learn() raises; ``marker`` records that it happened."""

    def __init__(self, marker: str = "") -> None:
        super().__init__()
        self.marker = marker

    def learn(self, task) -> None:
        if self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            raise RuntimeError("injected failure on the first attempt")
        super().learn(task)
