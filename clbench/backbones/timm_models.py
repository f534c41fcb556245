"""Any timm model by name, with local weights or (with the internet) hub weights.

``clbench run --backbone timm:vit_base_patch16_224.augreg_in21k`` loads the hub
weights by their full timm name and tag (tags changed meaning across timm
versions, so results record the exact one); ``--weights PATH`` loads a local
.pth/.safetensors file instead, which is the only way that works offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import timm
from timm.models._registry import _model_to_module
from torch import nn

from clbench.assets import file_sha256
from clbench.backbones import Backbone
from clbench.backbones._weights import load_strict, read_state_dict
from clbench.backbones.preprocessing import from_timm_config
from clbench.errors import ClbenchError, DataMissingError
from clbench.registry import register_backbone


def load_timm_weights(model: nn.Module, model_name: str, path: Path) -> None:
    """Load a local weights file into ``model`` strictly.

    timm's own file loading turns strict off whenever the classifier differs
    (always, here: the backbone has none), so a file with wrong keys would leave
    random layers. Instead the file is read safely, passed through the model
    family's ``checkpoint_filter_fn`` when timm has one (it converts original
    checkpoints and resizes position embeddings), and must then fit exactly;
    only the dropped classifier's keys may be left over.
    """
    state = read_state_dict(path)
    family = sys.modules.get(f"timm.models.{_model_to_module.get(model_name.split('.')[0], '')}")
    filter_fn = getattr(family, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as exc:  # the converter assumes its own key layout
            raise ClbenchError(
                f"the weights in {path} are not a {model_name} checkpoint: timm's converter "
                f"failed with {type(exc).__name__}: {str(exc)[:200]}",
                "pass the weights of exactly this architecture",
            ) from exc
    classifier = model.pretrained_cfg.get("classifier") or ()
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    load_strict(model, state, str(path), ignore_unexpected=tuple(f"{p}." for p in prefixes))


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
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        load_timm_weights(model, model_name, Path(weights))
        weights_id = file_sha256(Path(weights))[:12]
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
        # Hub weights are not described: the hub, not a local file, decides what they are.
        weights_files=[Path(weights)] if weights else None,
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
