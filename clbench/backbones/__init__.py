"""Pretrained image encoders behind one interface, and their registry.

A Backbone maps a batch of images to embeddings ``(B, feature_dim)`` and knows
its own preprocessing. Its ``cache_id`` (architecture, weights hash, transform)
keys the feature cache, so features of different weights never mix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clbench._compat import ensure_torchvision_importable
from clbench.backbones.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

ensure_torchvision_importable()


class Backbone(nn.Module):
    """An image encoder with its preprocessing.

    ``model`` is the underlying network (a timm model for most backbones), exposed
    so that parameter-efficient modules can be attached to it; ``embed`` returns
    the pooled, pre-classifier embedding. ``preprocessing`` is what the weights
    were pretrained with (see ``clbench.backbones.preprocessing``); the loose
    ``image_size``/``mean``/``std``/``crop_pct`` arguments build one for
    backbones without a pretraining config (tests, probes).

    ``weights_files`` lists the local files the weights were read from (empty for
    a seeded random initialisation); None, the default, means they are not all
    local files (hub downloads, tests), and such a backbone is never described
    for later runs (see ``clbench.backbones.descriptor``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        weights_id: str,
        feature_dim: int,
        image_size: int | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        crop_pct: float = 1.0,
        preprocessing: Preprocessing | None = None,
        weights_files: Sequence[str | Path] | None = None,
    ) -> None:
        super().__init__()
        if preprocessing is None:
            if image_size is None:
                raise ValueError("a Backbone needs preprocessing or image_size")
            preprocessing = Preprocessing(image_size, crop_pct, mean=mean, std=std)
        self.model = model
        self.name = name
        self.weights_id = weights_id
        self.feature_dim = feature_dim
        self.preprocessing = preprocessing
        self.weights_files = None if weights_files is None else tuple(map(Path, weights_files))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        model = self.model
        return model.forward_head(model.forward_features(images), pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocessing.std

    @property
    def crop_pct(self) -> float:
        return self.preprocessing.crop_pct

    @property
    def parameter_count(self) -> int:
        """All parameters of the network, trainable or not."""
        return sum(p.numel() for p in self.parameters())

    @property
    def transform_id(self) -> str:
        return self.preprocessing.transform_id

    @property
    def cache_id(self) -> str:
        """Identifies (architecture, weights, test transform): the feature-cache key."""
        return f"{self.name}@{self.weights_id}/{self.transform_id}"

    def transform(self, train: bool = False):
        """PIL image -> normalised tensor. ``train`` adds the usual light augmentation."""
        return self.preprocessing.transform(train)

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
    spec: str,
    weights: str | None = None,
    image_size: int | None = None,
    **preprocessing: Any,
) -> Backbone:
    """Create the backbone a CLI spec names (registry name, optionally ``:model``).

    ``image_size`` goes to the factory (a ViT's position grid depends on it) and
    keeps the weights' crop fraction; ``preprocessing`` overrides the rest by
    name (``crop_pct``, ``normalization``, ``resize``, ``interpolation``).
    """
    from clbench.registry import create_backbone

    name, kwargs = parse_backbone_spec(spec)
    if weights is not None:
        kwargs["weights"] = weights
    if image_size is not None:
        kwargs["image_size"] = image_size
    backbone = create_backbone(name, **kwargs)
    if hasattr(backbone, "preprocessing"):  # image backbones (a language model has a tokenizer)
        backbone.preprocessing = backbone.preprocessing.override(**preprocessing)
    elif any(v is not None for v in preprocessing.values()):
        from clbench.errors import ConfigError

        raise ConfigError(
            f"backbone {spec!r} takes no image preprocessing options",
            "drop --crop-pct, --normalization, --resize-mode and --interpolation",
        )
    return backbone
