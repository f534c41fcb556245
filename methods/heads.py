"""Classifier heads shared by the methods that train one."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

HEAD_KINDS = ("linear", "cosine")

HeadInit = Literal["default", "trunc-normal"]
"""How a head's new rows start. ``default``: ``nn.Linear``'s own (weights and bias
uniform in +-1/sqrt(in_features)). ``trunc-normal``: weights normal with std 0.02
(timm's ``trunc_normal_``, whose +-2 bounds are 100 std away), bias 0: the timm ViT
head that LAMDA-PILOT's SLCA, L2P and DualPrompt train (``backbone/linears.py``
``SimpleContinualLinear``, and its ViTs' ``init_weights``)."""


def grow_linear(
    head: nn.Linear | None, in_features: int, out_features: int, init: HeadInit = "default"
) -> nn.Linear:
    """A Linear with ``out_features`` outputs whose first rows copy ``head``'s.

    Methods whose label space grows with each task (sequential linear, finetune,
    SEMA, MOS) keep the learned rows of old classes and add fresh ones, started
    as ``init`` says.
    """
    grown = nn.Linear(in_features, out_features)
    if init == "trunc-normal":
        with torch.no_grad():
            nn.init.trunc_normal_(grown.weight, std=0.02, a=-2.0, b=2.0)
            grown.bias.zero_()
    if head is not None:
        with torch.no_grad():
            grown.weight[: head.out_features] = head.weight
            grown.bias[: head.out_features] = head.bias
    return grown


class CosineHead(nn.Module):
    """Scaled cosine classifier: ``scale * cos(x, w_c)`` for every class row ``w_c``.

    ``scale`` is learned and starts at 1; rows start uniform in +-1/sqrt(in_features).
    It is the head LAMDA-PILOT's APER and RanPAC learners (and the RanPAC authors'
    code) train the first session with (their ``CosineLinear``); clbench's
    default there is a plain ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


def make_head(kind: str, in_features: int, out_features: int) -> nn.Module:
    """A fresh ``linear`` or ``cosine`` classifier head (``kind`` validated by the caller)."""
    if kind == "cosine":
        return CosineHead(in_features, out_features)
    return nn.Linear(in_features, out_features)
