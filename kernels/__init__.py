"""Fused per-class statistics, prototype scoring and kNN, dispatched by device.

Each public function has one signature and two implementations with the same
answers: ``torch_ops`` (CPU, and the reference) and ``triton_ops`` (CUDA, when
Triton from the optional ``gpu`` extra is installed). The device of the first
tensor argument chooses. ``CLBENCH_KERNELS=torch`` forces the torch path
everywhere; ``CLBENCH_KERNELS=triton`` with ``TRITON_INTERPRET=1`` runs the
Triton kernels on CPU tensors through Triton's interpreter (slow; for tests).
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from types import ModuleType

import torch

from clbench.errors import ConfigError
from clbench.kernels import products, torch_ops
from clbench.kernels.common import MAX_K, VOTES, ClassStats, check_labels, class_votes
from clbench.kernels.torch_ops import row_norms

__all__ = [
    "MAX_K",
    "ClassStats",
    "backend_name",
    "class_stats",
    "knn_scores",
    "knn_search",
    "prototype_predict",
    "prototype_scores",
    "row_norms",
    "validate_environment",
]


@cache
def triton_installed() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


KERNEL_CHOICES = ("auto", "torch", "triton")


def validate_environment() -> None:
    """Refuse a misspelt ``CLBENCH_KERNELS`` / ``CLBENCH_MATMUL`` before a run starts,
    rather than at its first scoring call after the features were extracted."""
    choice = os.environ.get("CLBENCH_KERNELS", "auto")
    if choice not in KERNEL_CHOICES:
        raise ConfigError(
            f"CLBENCH_KERNELS={choice!r} is not a kernel backend",
            f"use one of {', '.join(KERNEL_CHOICES)}",
        )
    if os.environ.get("CLBENCH_MATMUL", "auto") != "auto":
        products.library_for(0, 0)  # validates the forced library; measures nothing


def backend_name(tensor: torch.Tensor) -> str:
    """``"triton"`` or ``"torch"``: the implementation that serves this tensor."""
    choice = os.environ.get("CLBENCH_KERNELS", "auto")
    if choice == "torch" or not triton_installed():
        return "torch"
    if tensor.dtype == torch.float64:
        return "torch"  # float64 is the exact-statistics request; the Triton kernels are fp32
    if tensor.is_cuda:
        return "triton"
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    return "triton" if choice == "triton" and interpreting else "torch"


def _ops(tensor: torch.Tensor) -> ModuleType:
    if backend_name(tensor) == "torch":
        return torch_ops
    from clbench.kernels import triton_ops  # imports triton: only when it will be used

    return triton_ops


def class_stats(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    normalize: bool = False,
    outer: bool = False,
    stats: ClassStats | None = None,
) -> ClassStats:
    """Per-class counts and sums of ``features`` (optionally L2-normalised first), and
    with ``outer`` the pooled sum of x x^T, added to ``stats`` if given. float64."""
    return _ops(features).class_stats(features, labels, num_classes, normalize, outer, stats)


def prototype_scores(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n, C) float32 scores, higher is better: ``cosine`` similarity, ``euclidean``
    negative squared distance, or ``linear`` q @ p.T + bias (the LDA head)."""
    return _ops(queries).prototype_scores(queries, prototypes, metric, bias)


def prototype_predict(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n,) int64 argmax of ``prototype_scores`` without materialising all scores."""
    return _ops(queries).prototype_predict(queries, prototypes, metric, bias)


def knn_search(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int = 10,
    metric: str = "cosine",
    chunk: int | None = None,
    bank_norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) of the min(k, bank size) nearest bank rows, best first.
    Streams the bank: memory does not grow with the bank size. ``bank_norms``
    (``row_norms(bank)``, kept with a bank searched many times) saves a pass."""
    return _ops(queries).knn_search(queries, bank, k, metric, chunk, bank_norms)


def knn_scores(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 10,
    metric: str = "cosine",
    vote: str = "majority",
    chunk: int | None = None,
    bank_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n, num_classes) votes of the k nearest bank entries (``majority`` or
    ``distance``-weighted); equal votes go to the nearest neighbour's class.

    Only the search differs between backends, so the vote is done here once.
    """
    if vote not in VOTES:
        raise ConfigError(f"unknown vote {vote!r}", f"use one of {', '.join(VOTES)}")
    labels = check_labels(bank_labels.to(queries.device), bank.shape[0], num_classes, "bank")
    values, indices = knn_search(queries, bank, k, metric, chunk, bank_norms)
    return class_votes(values, indices, labels, num_classes, metric, vote)
