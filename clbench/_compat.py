"""Make torchvision importable on a CPU-only torch.

The only torchvision that pins torch 2.13.0 is a CUDA build; on the CPU torch its
C++ ops are missing and ``import torchvision`` (and so timm, open_clip and
avalanche) fails with ``operator torchvision::nms does not exist``. Declaring
the two operator schemas it registers fake kernels for is enough to import it;
only ``nms`` itself would then raise, and clbench never calls it (images are
decoded with PIL). A real torchvision with native ops is left untouched.
"""

from __future__ import annotations

import torch

_applied = False


def ensure_torchvision_importable() -> None:
    """Declare torchvision's nms schemas when its native library did not load."""
    global _applied
    if _applied:
        return
    _applied = True
    try:
        torch.ops.torchvision.nms  # noqa: B018 - probing whether the op exists
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")  # noqa: TID251
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    # Keep the library object alive for the process: dropping it unregisters the ops.
    globals()["_torchvision_stub_library"] = lib
