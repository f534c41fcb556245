"""AdaptFormer adapters: a bottleneck branch parallel to each ViT block's MLP.

    x <- x + attn(norm1(x))                     (timm Block, unchanged)
    x <- x + mlp(norm2(x)) + branch(x)          (the branch sees the residual stream)

``Adapter`` is the branch of AdaptFormer / APER / SEMA / MOS: down-projection,
ReLU, dropout, up-projection initialised to zero, times a fixed ``scale``; at
initialisation it adds exactly zero, so the adapted network equals the
pretrained one. ``attach_adapters`` wraps the chosen blocks in
``AdaptedBlock``; a block's ``branch`` is any module mapping tokens ``(B, N, D)``
to ``(B, N, D)``, so methods can put their own mixture there (SEMA: several
adapters mixed by a router; MOS: one adapter set per task) through
``factory`` or ``set_branch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from clbench.methods.peft.common import vit_blocks


class Adapter(nn.Module):
    """AdaptFormer bottleneck ``scale * up(dropout(relu(down(x))))``, zero at initialisation."""

    def __init__(
        self, dim: int, bottleneck: int = 16, scale: float = 0.1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.dim, self.bottleneck, self.scale = dim, bottleneck, scale
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # "lora" initialisation of AdaptFormer: Kaiming-uniform down, zero up and biases.
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(torch.relu(self.down(x)))) * self.scale

    @staticmethod
    def num_parameters(dim: int, bottleneck: int) -> int:
        """Parameters of one adapter: two weight matrices and two biases."""
        return 2 * dim * bottleneck + bottleneck + dim


class AdaptedBlock(nn.Module):
    """A timm ViT ``Block`` with a branch added parallel to its MLP.

    The wrapped block's own modules (``norm1``, ``attn``, ``ls1`` ...) are used as
    they are, so other PEFT modules attached inside it keep working.
    """

    def __init__(self, block: nn.Module, branch: nn.Module) -> None:
        super().__init__()
        for name in ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2"):
            if not hasattr(block, name):
                raise TypeError(
                    f"{type(block).__name__} lacks `{name}`: adapters need a timm ViT Block"
                )
        self.block = block
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x))))
        return x + b.drop_path2(b.ls2(b.mlp(b.norm2(x)))) + self.branch(x)


def attach_adapters(
    model: nn.Module,
    bottleneck: int = 16,
    scale: float = 0.1,
    dropout: float = 0.1,
    blocks: Iterable[int] | None = None,
    factory: Callable[[int, int], nn.Module] | None = None,
) -> list[AdaptedBlock]:
    """Wrap blocks of a timm ViT (all, or the indices in ``blocks``) with a parallel branch.

    The branch of block ``i`` is ``factory(i, dim)`` when given, else an ``Adapter``.
    Returns the wrapped blocks in order. The model's other parameters are untouched
    (freeze them with ``peft.freeze`` first if only the adapters should train).
    """
    seq = vit_blocks(model)
    dim = model.embed_dim
    chosen = range(len(seq)) if blocks is None else list(blocks)
    wrapped = []
    for i in chosen:
        if isinstance(seq[i], AdaptedBlock):
            raise ValueError(
                f"block {i} already has an adapter branch; use set_branch to replace it"
            )
        branch = factory(i, dim) if factory else Adapter(dim, bottleneck, scale, dropout)
        seq[i] = AdaptedBlock(seq[i], branch)
        wrapped.append(seq[i])
    return wrapped


def adapted_blocks(model: nn.Module) -> dict[int, AdaptedBlock]:
    """Block index -> ``AdaptedBlock`` for every block that carries a branch."""
    return {i: b for i, b in enumerate(vit_blocks(model)) if isinstance(b, AdaptedBlock)}


def set_branch(model: nn.Module, index: int, branch: nn.Module) -> nn.Module | None:
    """Put ``branch`` on block ``index`` (wrapping the block if needed); returns the branch it replaced."""
    seq = vit_blocks(model)
    if not isinstance(seq[index], AdaptedBlock):
        seq[index] = AdaptedBlock(seq[index], branch)
        return None
    old, seq[index].branch = seq[index].branch, branch
    return old


def detach_adapters(model: nn.Module) -> None:
    """Put the original blocks back (drops every branch)."""
    seq = vit_blocks(model)
    for i, b in enumerate(seq):
        if isinstance(b, AdaptedBlock):
            seq[i] = b.block
