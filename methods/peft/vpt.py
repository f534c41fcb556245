"""Visual prompt tuning (VPT) for timm ViTs: learnable tokens inserted after the prefix tokens.

Shallow: ``num_prompts`` tokens are inserted once, before the first block.
Deep: each block gets its own fresh tokens, replacing the previous block's.
The prompt outputs are dropped after the last block, so pooling (class token
or average) and the token layout seen by the head are those of the plain ViT.
Prompts are initialised uniformly in +-sqrt(6 / (patch_area*3 + dim)), as in
the VPT paper (Xavier on the patch-embedding fan-in).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clbench.methods.peft.common import vit_blocks


class PromptedBlocks(nn.Module):
    """A timm ViT's block sequence with prompt tokens (replaces ``model.blocks``)."""

    def __init__(
        self,
        blocks: nn.Sequential,
        dim: int,
        num_prompts: int,
        deep: bool,
        num_prefix_tokens: int,
        init_bound: float,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.num_prompts = num_prompts
        self.deep = deep
        self.num_prefix_tokens = num_prefix_tokens
        layers = len(blocks) if deep else 1
        self.prompts = nn.Parameter(
            torch.empty(layers, num_prompts, dim).uniform_(-init_bound, init_bound)
        )

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> nn.Module:
        return self.blocks[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, n = self.num_prefix_tokens, self.num_prompts
        for i, block in enumerate(self.blocks):
            if i == 0 or self.deep:
                prompts = self.prompts[i].to(x.dtype).expand(x.shape[0], -1, -1)
                rest = x[:, p:] if i == 0 else x[:, p + n :]
                x = torch.cat([x[:, :p], prompts, rest], dim=1)
            x = block(x)
        return torch.cat([x[:, :p], x[:, p + n :]], dim=1)


def attach_vpt(model: nn.Module, num_prompts: int = 10, deep: bool = False) -> PromptedBlocks:
    """Give a timm ViT ``num_prompts`` prompt tokens (``deep``: per block); returns the prompt module."""
    if num_prompts <= 0:
        raise ValueError(f"num_prompts must be positive, got {num_prompts}")
    blocks = vit_blocks(model)
    patch = model.patch_embed.patch_size
    bound = math.sqrt(6.0 / (3 * patch[0] * patch[1] + model.embed_dim))
    prompted = PromptedBlocks(
        blocks, model.embed_dim, num_prompts, deep, model.num_prefix_tokens, bound
    )
    model.blocks = prompted
    return prompted
