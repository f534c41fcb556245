"""Classifier heads shared by the methods that train one."""

from __future__ import annotations

import torch
from torch import nn


def grow_linear(head: nn.Linear | None, in_features: int, out_features: int) -> nn.Linear:
    """A Linear with ``out_features`` outputs whose first rows copy ``head``'s.

    Methods whose label space grows with each task (sequential linear, finetune,
    SEMA, MOS) keep the learned rows of old classes and add fresh ones.
    """
    grown = nn.Linear(in_features, out_features)
    if head is not None:
        with torch.no_grad():
            grown.weight[: head.out_features] = head.weight
            grown.bias[: head.out_features] = head.bias
    return grown
