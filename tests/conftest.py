"""Shared fixtures: tests never write into the repository's results or progress bars."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CLBENCH_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path_factory, monkeypatch):
    """Point the results store at a temporary folder for every test."""
    monkeypatch.setenv("CLBENCH_RESULTS", str(tmp_path_factory.mktemp("runs")))
