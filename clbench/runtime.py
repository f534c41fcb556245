"""Process-wide switches, set in this one place before a run builds anything.

``torch.set_flush_denormal(True)``: subnormal floats make CPU matrix products
take a microcode slow path; a random-init ViT-B forward took 1.8 s instead of
0.29 s without it (ASSETS.md), and the DINOv2 ViT ~6x longer. Flushing them to
zero changes no result the benchmarks report. Readers of this module: add a
switch here, with its reason, rather than at a call site.
"""

from __future__ import annotations

import torch


def configure_torch() -> None:
    """Apply clbench's process-wide torch settings (idempotent)."""
    torch.set_flush_denormal(True)
    from clbench.kernels import validate_environment  # kernels import torch_ops, not methods

    validate_environment()
