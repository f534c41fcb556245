"""Freezing and counting helpers shared by every parameter-efficient module."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``module`` (only those that require a gradient, by default)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients for every parameter of ``module``; returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(modules: Iterable[nn.Module]) -> None:
    """Let every parameter of ``modules`` train."""
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)


def train_only(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    """Freeze ``model`` except its sub-modules of type ``kinds`` (the PEFT modules); returns those."""
    freeze(model)
    found = [m for m in model.modules() if isinstance(m, kinds)]
    unfreeze(found)
    return found


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model``: kept in eval mode when the body they normalise is frozen."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def vit_blocks(model: nn.Module) -> nn.Sequential:
    """The transformer blocks of a timm ViT (``model.blocks``), with a clear error otherwise."""
    blocks = getattr(model, "blocks", None)
    inner = getattr(blocks, "blocks", None)  # blocks wrapped by VPT's PromptedBlocks
    if isinstance(inner, nn.Sequential):
        blocks = inner
    if not isinstance(blocks, nn.Sequential) or not hasattr(model, "embed_dim"):
        raise TypeError(
            f"{type(model).__name__} has no timm-style `blocks`; this module needs a timm ViT"
        )
    return blocks


@contextmanager
def switched(modules: Iterable[nn.Module], **attributes: Any) -> Iterator[None]:
    """Set ``attributes`` on every module for the duration of a block, then restore them.

    The one way clbench's branch modules take a per-forward setting that a
    ``forward(x)`` signature cannot carry: which adapter a MOS block uses, whether a
    SEMA mixture scans its descriptors.
    """
    modules = list(modules)
    saved = [{name: getattr(m, name) for name in attributes} for m in modules]
    for m in modules:
        for name, value in attributes.items():
            setattr(m, name, value)
    try:
        yield
    finally:
        for m, old in zip(modules, saved, strict=True):
            for name, value in old.items():
                setattr(m, name, value)
