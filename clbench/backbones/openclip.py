"""open_clip image towers by architecture name.

``--backbone openclip:ViT-B-16 --weights PATH`` loads a local checkpoint; a
pretrained tag (``--weights openai``) needs the internet. ``--weights none``
builds a randomly initialised tower (only for testing the mechanics).
"""

from __future__ import annotations

from pathlib import Path

import torch

from clbench.assets import file_sha256
from clbench.backbones import Backbone
from clbench.backbones.preprocessing import Preprocessing
from clbench.errors import ClbenchError, DataMissingError
from clbench.registry import register_backbone


class OpenClipBackbone(Backbone):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


@register_backbone("openclip")
def openclip_backbone(
    model: str = "ViT-B-16", weights: str | None = None, image_size: int | None = None
) -> Backbone:
    """An open_clip image tower (`--backbone openclip:ViT-B-16`), local or hub weights."""
    import open_clip

    if model not in open_clip.list_models():
        raise ClbenchError(
            f"open_clip has no model {model!r}", f"choose one of {open_clip.list_models()[:8]} ..."
        )
    if weights in (None, ""):
        raise ClbenchError(
            "open_clip backbones need --weights: a local checkpoint, a pretrained tag such as "
            "'openai' (internet), or 'none' for random initialisation",
        )
    pretrained = None if weights == "none" else weights
    if pretrained and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise DataMissingError(
            f"weights file not found: {pretrained}", "pass an existing checkpoint"
        )
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained)
    except Exception as exc:
        raise DataMissingError(
            f"could not load open_clip {model} weights {weights!r}: {exc}",
            "with no internet, pass a local checkpoint file with --weights",
        ) from exc
    weights_id = (
        "random"
        if pretrained is None
        else file_sha256(Path(pretrained))[:12]
        if Path(pretrained).is_file()
        else f"hub:{pretrained}"
    )
    visual = clip.visual
    native = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    size = image_size or native
    del clip.transformer  # only the image tower is used: drop the text tower's memory
    cfg = preprocess.transforms[-1]
    return OpenClipBackbone(
        clip.eval(),
        name=f"openclip:{model}",
        weights_id=weights_id,
        feature_dim=visual.output_dim,
        # open_clip's own eval transform: resize the shorter side to the size, centre-crop it.
        preprocessing=Preprocessing(
            size, 1.0, mean=cfg.mean, std=cfg.std, source=f"open_clip {model} preprocess"
        ),
    )
