"""LoRA: a trainable low-rank update ``(alpha / r) * B A`` beside a frozen Linear.

A is Kaiming-uniform and B is zero, so at initialisation the layer computes
exactly what the pretrained one did. ``attach_lora`` wraps the Linear layers of
a timm ViT whose names end in ``targets`` (qkv, proj, fc1, fc2 by default);
``merge_lora`` folds the update back into the weights (no inference overhead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + scaling * B(A(x))`` with ``base`` kept as it is."""

    def __init__(
        self, base: nn.Linear, rank: int = 8, alpha: float | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        self.rank = rank
        self.scaling = (alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (self.dropout(x) @ self.lora_a.T) @ self.lora_b.T
        return self.base(x) + self.scaling * update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The base Linear with the low-rank update added to its weight."""
        self.base.weight += self.scaling * (self.lora_b @ self.lora_a).to(self.base.weight)
        return self.base

    @staticmethod
    def num_parameters(in_features: int, out_features: int, rank: int) -> int:
        return rank * (in_features + out_features)


DEFAULT_TARGETS = ("qkv", "proj", "fc1", "fc2")


def attach_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float | None = None,
    targets: Iterable[str] = DEFAULT_TARGETS,
    dropout: float = 0.0,
) -> list[LoRALinear]:
    """Wrap every ``nn.Linear`` whose attribute name is in ``targets``; returns the wrappers.

    Only Linear layers inside ``model`` are considered (for a timm ViT: the
    attention ``qkv``/``proj`` and MLP ``fc1``/``fc2`` of every block; the patch
    embedding's ``proj`` is a convolution and is skipped).
    """
    targets = set(targets)
    found = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if name in targets and type(child) is nn.Linear
    ]
    if not found:
        raise ValueError(f"no nn.Linear named {sorted(targets)} in {type(model).__name__}")
    wrapped = []
    for parent, name, child in found:
        lora = LoRALinear(child, rank, alpha, dropout)
        setattr(parent, name, lora)
        wrapped.append(lora)
    return wrapped


def merge_lora(model: nn.Module) -> None:
    """Replace every ``LoRALinear`` by its merged Linear."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
