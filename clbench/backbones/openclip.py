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
from clbench.backbones._weights import list_keys, read_state_dict
from clbench.errors import ClbenchError, DataMissingError
from clbench.registry import register_backbone


class OpenClipBackbone(Backbone):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


def _with_local_weights(open_clip, model: str, path: Path):
    """Build the model randomly initialised, then load ``path`` strictly.

    The file is read with :func:`read_state_dict` first (safe, one message for a
    bad file); open_clip's own loader then converts its formats, non-strictly so
    that the keys it could not place are listed here instead of a traceback.
    """
    read_state_dict(path)
    clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None)
    from open_clip.factory import load_checkpoint

    try:
        incompatible = load_checkpoint(clip, str(path), strict=False)
    except Exception as exc:  # its converters assume their own layouts
        raise ClbenchError(
            f"the weights in {path} are not an open_clip {model} checkpoint: "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            "pass the weights of exactly this architecture",
        ) from exc
    if incompatible and (incompatible.missing_keys or incompatible.unexpected_keys):
        raise ClbenchError(
            f"the weights in {path} do not fit open_clip {model}; keys "
            f"{len(incompatible.missing_keys)} missing: {list_keys(incompatible.missing_keys)}; "
            f"{len(incompatible.unexpected_keys)} unexpected: "
            f"{list_keys(incompatible.unexpected_keys)}",
            "pass the weights of exactly this architecture (a non-strict load would leave "
            "random layers)",
        )
    return clip, preprocess


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
    local = pretrained is not None and (Path(pretrained).suffix or Path(pretrained).exists())
    if local:
        clip, preprocess = _with_local_weights(open_clip, model, Path(pretrained))
    else:
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained
            )
        except Exception as exc:  # hub unreachable, unknown tag, ...
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
        image_size=size,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )
