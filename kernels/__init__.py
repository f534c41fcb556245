"""Fused per-class statistics, prototype scoring and kNN, dispatched by device.

Each public function has one signature; CPU tensors run the torch
implementation in ``torch_ops``, CUDA tensors run the Triton kernels when
Triton is installed (optional ``gpu`` extra), else the torch implementation.
"""

from __future__ import annotations

from clbench.kernels.torch_ops import (
    ClassStats,
    class_stats,
    knn_scores,
    prototype_scores,
)

__all__ = ["ClassStats", "class_stats", "knn_scores", "prototype_scores"]
