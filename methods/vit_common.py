"""Pieces shared by the methods that adapt a ViT together with a classifier head.

``TaskAdapters`` keeps one adapter per learned task in a block (MOS, EASE) and
``AdapterView`` embeds with one of them, for the feature cache.

``trainable_vit`` gives a method its own frozen copy of the run's backbone (a
clear error for a non-ViT backbone). SEMA and MOS train a linear head over all classes seen so far while the
current task's data contains only new classes; both mask the old classes'
logits out of the loss (PILOT's ``logits[:, :known] = -inf``) so that a task
never pushes old classes down: the old rows of the head get no gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clbench.backbones import Backbone
from clbench.context import RunContext
from clbench.errors import ConfigError
from clbench.methods.peft.common import freeze, switched, vit_blocks


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, known_classes: int
) -> torch.Tensor:
    """Cross-entropy over the classes ``>= known_classes`` only (old logits set to -inf).

    ``masked_fill`` (not in-place assignment) keeps the logits' graph intact: the
    masked entries get an exactly zero gradient.
    """
    if known_classes == 0:
        return F.cross_entropy(logits, targets)
    mask = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    mask[:known_classes] = True
    return F.cross_entropy(logits.masked_fill(mask, float("-inf")), targets)


def old_class_count(seen_classes: int, new_classes: int) -> int:
    """How many leading logits to mask for a task: the classes learned before it.

    A task that brings no new classes (a new domain of known classes) masks
    nothing, since all its labels are old ones.
    """
    return seen_classes - new_classes if new_classes else 0


def trainable_vit(ctx: RunContext, method: str) -> Backbone:
    """A frozen copy of the run's backbone, checked to be a timm-style ViT (adapters go in its blocks)."""
    net = freeze(ctx.new_backbone())
    try:
        vit_blocks(net.model)
    except TypeError as exc:
        raise ConfigError(
            f"{method} adapts the blocks of a ViT, but the backbone is {ctx.backbone.name}",
            "use --backbone dinov2-vits14 or --backbone timm:vit_... (with --weights offline)",
        ) from exc
    return net


class TaskAdapters(nn.Module):
    """One block's MOS adapters: the one in training plus a frozen snapshot per learned task.

    ``active`` picks the adapter a forward pass uses: ``None`` for the current
    one, ``k`` for task k's snapshot.
    """

    def __init__(self, adapter: nn.Module) -> None:
        super().__init__()
        self.current = adapter
        self.saved = nn.ModuleList()
        self.active: int | None = None

    def snapshot(self) -> None:
        self.saved.append(freeze(copy.deepcopy(self.current)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapter = self.current if self.active is None else self.saved[self.active]
        return adapter(x)


class AdapterView(nn.Module):
    """The adapted network embedding with task ``index``'s adapter (for the feature cache)."""

    def __init__(self, net: nn.Module, blocks: Sequence[TaskAdapters], index: int) -> None:
        super().__init__()
        self.net = net
        self.blocks = list(blocks)
        self.index = index

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with switched(self.blocks, active=self.index):
            return self.net(images)
