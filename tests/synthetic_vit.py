"""A small random timm ViT as a Backbone, and synthetic image tasks, for mechanism tests.

The images of a task are class templates plus noise; ``shift`` adds a constant
to every pixel, which moves the whole input distribution (what SEMA's
descriptors must notice) without changing the classes' structure.
"""

from __future__ import annotations

import numpy as np
import torch

import clbench.backbones  # noqa: F401  (torchvision compat before timm)
from clbench.backbones import Backbone
from clbench.backbones.descriptor import LazyBackbone, describe
from clbench.context import RunContext
from clbench.data import ArrayLoader, Samples
from clbench.features import FeatureCache
from clbench.scenario import TrainTask

SIZE = 32


def tiny_backbone(depth: int = 4, dim: int = 48) -> Backbone:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=SIZE,
        patch_size=8,
        embed_dim=dim,
        depth=depth,
        num_heads=3,
        init_values=0.5,
        num_classes=0,
    ).eval()
    return Backbone(
        model,
        name="test:tiny-vit",
        weights_id="random0",
        weights_files=(),  # seeded: every build is the same network
        feature_dim=dim,
        image_size=SIZE,
    )


def tiny_context(
    depth: int = 4, lazy: bool = False, cache: FeatureCache | None = None
) -> RunContext:
    """A run context on the tiny ViT; ``lazy``: known by its description and built on
    first need, as a run gets it when a previous run described the backbone."""
    torch.manual_seed(0)
    backbone: Backbone | LazyBackbone = tiny_backbone(depth)
    if lazy:
        backbone = LazyBackbone(describe(backbone), lambda: tiny_backbone(depth))
    return RunContext(backbone=backbone, cache=cache or FeatureCache(None), batch_size=32)


def synthetic_task(
    index: int, classes: list[int], seen: int, shift: int = 0, per_class: int = 8, seed: int = 0
) -> tuple[TrainTask, Samples]:
    """A training task over ``classes`` and a test set of the same classes (other noise)."""
    rng = np.random.RandomState(seed)
    templates = {
        c: np.random.RandomState(100 + c).randint(0, 80, size=(SIZE, SIZE, 3)) for c in classes
    }

    def draw(n: int, tag: str) -> Samples:
        labels = np.repeat(classes, n)
        pixels = np.stack(
            [templates[c] + rng.randint(0, 40, size=(SIZE, SIZE, 3)) + shift for c in labels]
        )
        images = np.clip(pixels, 0, 255).astype(np.uint8)
        return Samples(
            f"synthetic/{tag}-{seed}-{shift}",
            [f"{tag}/{i}" for i in range(len(labels))],
            labels,
            ArrayLoader(images),
        )

    train = draw(per_class, "train")
    return TrainTask(index, np.array(classes), seen, train), draw(per_class // 2, "test")
