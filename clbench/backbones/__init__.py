"""Pretrained image encoders behind one interface, and their registry.

A Backbone maps a batch of images to embeddings ``(B, feature_dim)`` and knows
its own preprocessing. Its ``cache_id`` (architecture, weights hash, transform)
keys the feature cache, so features of different weights never mix.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from clbench._compat import ensure_torchvision_importable

ensure_torchvision_importable()

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """An image encoder with its preprocessing.

    ``model`` is the underlying network (a timm model for most backbones), exposed
    so that parameter-efficient modules can be attached to it; ``embed`` returns
    the pooled, pre-classifier embedding.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        weights_id: str,
        feature_dim: int,
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        crop_pct: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.weights_id = weights_id
        self.feature_dim = feature_dim
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.crop_pct = crop_pct

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        model = self.model
        return model.forward_head(model.forward_features(images), pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    @property
    def transform_id(self) -> str:
        return f"eval-{self.image_size}-crop{self.crop_pct:g}-bicubic"

    @property
    def cache_id(self) -> str:
        """Identifies (architecture, weights, test transform): the feature-cache key."""
        return f"{self.name}@{self.weights_id}/{self.transform_id}"

    def transform(self, train: bool = False):
        """PIL image -> normalised tensor. ``train`` adds the usual light augmentation."""
        from torchvision import transforms as T

        size = self.image_size
        normalize = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        if train:
            return T.Compose(
                [
                    T.RandomResizedCrop(
                        size, scale=(0.6, 1.0), interpolation=T.InterpolationMode.BICUBIC
                    ),
                    T.RandomHorizontalFlip(),
                    *normalize,
                ]
            )
        resize = int(round(size / self.crop_pct))
        return T.Compose(
            [
                T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(size),
                *normalize,
            ]
        )

    def fresh_copy(self) -> Backbone:
        """An independent copy (for methods that adapt the network)."""
        return copy.deepcopy(self)


def parse_backbone_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"timm:vit_small_patch16_224"`` -> ``("timm", {"model": "vit_small_patch16_224"})``."""
    name, sep, model = spec.partition(":")
    if sep and not model.strip():
        from clbench.errors import ConfigError

        raise ConfigError(
            f"backbone {spec!r} names no model after the colon",
            f"write e.g. --backbone {name or 'timm'}:resnet18, or --backbone {name or 'timm'} "
            "for its default",
        )
    return name, ({"model": model} if model else {})


def build_backbone(
    spec: str, weights: str | None = None, image_size: int | None = None
) -> Backbone:
    """Create the backbone a CLI spec names (registry name, optionally ``:model``)."""
    from clbench.registry import create_backbone

    name, kwargs = parse_backbone_spec(spec)
    if weights is not None:
        kwargs["weights"] = weights
    if image_size is not None:
        kwargs["image_size"] = image_size
    return create_backbone(name, **kwargs)
