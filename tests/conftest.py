"""Shared fixtures: tests never write into the repository's results or progress bars."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CLBENCH_PROGRESS", "0")
# Triton decides interpreter-or-compiler when triton.language is first imported,
# so the Triton kernel tests (tests/test_kernels_triton.py) need this set before
# any test module imports triton. It changes nothing else: CPU tensors only run
# Triton kernels when CLBENCH_KERNELS=triton is also set (see clbench.kernels).
# On a machine with a CUDA GPU the kernels are compiled for real instead.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard dependency
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    """One feature cache for the whole session: tests reuse each other's embeddings
    without ever writing into the user's cache."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path_factory, monkeypatch, _session_cache):
    """Results, features and checkpoints go to temporary folders in every test; only the
    real offline assets (read-only) come from the user cache."""
    monkeypatch.setenv("CLBENCH_RESULTS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("CLBENCH_FEATURES", str(_session_cache))
    monkeypatch.setenv("CLBENCH_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))
