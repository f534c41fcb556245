"""Any timm model by name, with local weights or (with the internet) hub weights.

``clbench run --backbone timm:vit_base_patch16_224.augreg_in21k`` loads the hub
weights by their full timm name and tag (tags changed meaning across timm
versions, so results record the exact one); ``--weights PATH`` loads a local
.pth/.safetensors file instead, which is the only way that works offline.
"""

from __future__ import annotations

from pathlib import Path

import timm

from clbench.assets import file_sha256
from clbench.backbones import Backbone
from clbench.backbones.preprocessing import from_timm_config
from clbench.errors import ClbenchError, DataMissingError
from clbench.registry import register_backbone


def create_timm_backbone(
    model_name: str, weights: str | None = None, image_size: int | None = None
) -> Backbone:
    """Build ``timm.create_model(model_name)`` without its classifier, weights loaded."""
    if model_name.split(".")[0] not in timm.list_models():
        raise ClbenchError(
            f"timm has no model {model_name.split('.')[0]!r}",
            "see `python -c 'import timm; print(timm.list_models(\"vit*\"))'` for names",
        )
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise DataMissingError(
                f"weights file not found: {path}", "pass an existing .pth or .safetensors file"
            )
        model = timm.create_model(
            model_name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)}
        )
        weights_id = file_sha256(path)[:12]
    else:
        try:
            model = timm.create_model(model_name, pretrained=True, num_classes=0)
        except Exception as exc:  # hub unreachable, unknown tag, ...
            raise DataMissingError(
                f"could not load pretrained weights for {model_name!r} from the Hugging Face hub: {exc}",
                "with no internet, download the weights elsewhere and pass --weights PATH",
            ) from exc
        weights_id = f"hub:{model.pretrained_cfg.get('tag') or 'default'}"
    return Backbone(
        model.eval(),
        name=f"timm:{model_name}",
        weights_id=weights_id,
        feature_dim=model.num_features,
        # --image-size changes the size only: the crop fraction stays the weights' own.
        preprocessing=from_timm_config(
            model.pretrained_cfg, image_size, source=f"timm:{model_name} pretrained_cfg"
        ),
    )


@register_backbone("timm")
def timm_backbone(
    model: str = "vit_base_patch16_224.augreg_in21k",
    weights: str | None = None,
    image_size: int | None = None,
) -> Backbone:
    """Any timm model by name (`--backbone timm:NAME`), hub or local (--weights) weights."""
    return create_timm_backbone(model, weights, image_size)
