"""A tiny registered backbone whose weights are a local file and whose every build is
logged, for the tests of ``clbench.backbones.descriptor`` (a warm run never builds it).

Importing it imports torch and clbench's backbone base only: no model library.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from clbench.assets import file_sha256
from clbench.backbones import Backbone
from clbench.backbones._weights import load_strict, read_state_dict
from clbench.errors import ConfigError
from clbench.registry import register_backbone

#: A file to which each build appends a line (the process id).
BUILD_LOG = "CLBENCH_TEST_BUILD_LOG"
NAME = "test-counted"
DIM = 8


class TinyNet(nn.Module):
    """One strided 3x3 convolution, average-pooled: the timm-style interface Backbone uses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, DIM, 3, stride=2)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return features.mean(dim=(2, 3))


def write_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(TinyNet().state_dict(), path)
    return path


def builds(log: Path) -> int:
    """How many times the factory ran (lines in the log)."""
    return len(log.read_text().splitlines()) if log.exists() else 0


@register_backbone(NAME)
def counted_backbone(weights: str | None = None, image_size: int | None = None) -> Backbone:
    """A 3x3 conv net read from --weights; every build is logged to $CLBENCH_TEST_BUILD_LOG."""
    if not weights:
        raise ConfigError(f"{NAME} needs --weights", "pass a file made by write_weights")
    log = os.environ.get(BUILD_LOG)
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
    path = Path(weights)
    model = TinyNet()
    load_strict(model, read_state_dict(path), str(path))
    return Backbone(
        model.eval(),
        name=NAME,
        weights_id=file_sha256(path)[:12],
        weights_files=[path],
        feature_dim=DIM,
        image_size=image_size or 16,
    )
