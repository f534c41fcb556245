"""open_clip vision-language models: both towers, class-name prompts, zero-shot scores.

``--backbone openclip:ViT-B-16 --weights PATH`` loads a local checkpoint; a
pretrained tag (``--weights openai``) needs the internet. ``--weights none``
builds a randomly initialised model; ``openclip:tiny`` is a small random CLIP
(2-layer towers, always 32 px) that exists offline, for testing the mechanics only:
its zero-shot scores mean nothing.

``embed`` is the image tower (so image-only methods and the feature cache use
it as before); ``encode_text`` and ``class_embeddings`` give the text side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from clbench.assets import file_sha256
from clbench.backbones import Backbone
from clbench.backbones._weights import list_keys, read_state_dict
from clbench.backbones.preprocessing import Preprocessing
from clbench.errors import ClbenchError, DataMissingError
from clbench.registry import register_backbone

#: The single prompt the MTIL/X-TAIL references use when a dataset names none.
DEFAULT_TEMPLATE = "a photo of a {}."
TINY = "tiny"
TINY_IMAGE = 32
TINY_CONTEXT = 16


class OpenClipBackbone(Backbone):
    """An open_clip CLIP: ``model`` has ``encode_image``, ``encode_text`` and ``logit_scale``."""

    def __init__(self, model, *, context_length: int, tokenizer_name: str, **kw) -> None:
        super().__init__(model, **kw)
        self.context_length = context_length
        self.tokenizer_name = tokenizer_name

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        import open_clip

        # The byte-pair vocabulary ships inside open_clip: tokenising never needs the network.
        tokenizer = open_clip.get_tokenizer(self.tokenizer_name, context_length=self.context_length)
        return tokenizer(list(texts))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)

    def class_embeddings(
        self, class_names: Sequence[str], template: str = DEFAULT_TEMPLATE
    ) -> torch.Tensor:
        """L2-normalised text embeddings of ``template.format(name)`` for every class."""
        return self.prompt_embeddings([template.format(n) for n in class_names])

    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings of the given prompts, one row each."""
        device = next(self.model.parameters()).device
        tokens = self.tokenize(list(prompts)).to(device)
        return F.normalize(self.encode_text(tokens).float(), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def zero_shot_scores(self, images: torch.Tensor, text_embeddings: torch.Tensor):
        """CLIP logits ``scale * cos(image, class prompt)`` of an image batch."""
        image = F.normalize(self.embed(images).float(), dim=-1)
        return self.logit_scale() * image @ text_embeddings.T


def tiny_clip():
    """A small randomly initialised CLIP (both towers with ``nn.MultiheadAttention``), seeded."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(
            layers=2, width=32, head_width=16, patch_size=8, image_size=TINY_IMAGE
        ),
        text_cfg=CLIPTextCfg(context_length=TINY_CONTEXT, width=32, heads=2, layers=2),
    )


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
    """An open_clip CLIP (`--backbone openclip:ViT-B-16`), local or hub weights; `openclip:tiny` is random."""
    import open_clip

    if model == TINY:
        clip = tiny_clip()
        return OpenClipBackbone(
            clip.eval(),
            name=f"openclip:{TINY}",
            weights_id="random0",
            weights_files=(),  # seeded: the same network every time
            feature_dim=32,
            # Its position grid is fixed: a scenario's preferred size does not apply.
            image_size=TINY_IMAGE,
            mean=open_clip.OPENAI_DATASET_MEAN,
            std=open_clip.OPENAI_DATASET_STD,
            context_length=TINY_CONTEXT,
            tokenizer_name="ViT-B-16",
        )
    if model not in open_clip.list_models():
        raise ClbenchError(
            f"open_clip has no model {model!r}",
            f"choose {TINY!r} or one of {open_clip.list_models()[:8]} ...",
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
    cfg = preprocess.transforms[-1]
    return OpenClipBackbone(
        clip.eval(),
        name=f"openclip:{model}",
        weights_id=weights_id,
        # Only a local file is described; a hub tag or an unseeded random init is not.
        weights_files=[Path(pretrained)] if local and Path(pretrained).is_file() else None,
        feature_dim=visual.output_dim,
        # open_clip's own eval transform: resize the shorter side to the size, centre-crop it.
        preprocessing=Preprocessing(
            image_size or native,
            1.0,
            mean=cfg.mean,
            std=cfg.std,
            source=f"open_clip {model} preprocess",
        ),
        context_length=getattr(clip, "context_length", 77),
        tokenizer_name=model,
    )
