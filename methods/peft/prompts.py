"""Prompt pools for rehearsal-free prompting (L2P, DualPrompt, CODA-Prompt) on timm ViTs.

Two ways to put prompts into a frozen ViT, both set per batch (the prompts
depend on each image's query):

- ``InputPrompts`` (prompt tuning, L2P): tokens inserted after the prefix
  tokens before the first block; their outputs are kept in ``outputs`` and
  dropped from the sequence, so the class-token path is that of the plain ViT.
- ``PrefixAttention`` (prefix tuning, DualPrompt and CODA-Prompt): key and
  value tokens prepended inside a block's attention; the sequence length is
  unchanged.

And two ways to make prompts from a query q (the frozen ViT's feature):

- ``PromptPool``: prompts with learnable keys; the prompts whose keys are most
  cosine-similar to q are selected (L2P, DualPrompt's E-prompts), and the
  similarity of the selected keys is the "pull" term that draws keys to queries.
- ``ComponentPool``: CODA-Prompt's prompt = sum_m alpha_m P_m with
  alpha_m = cos(q * A_m, K_m); a task trains its own slice of components, the
  earlier slices stay fixed, and new slices start orthogonal to the old ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbench.methods.peft.common import vit_blocks


class InputPrompts(nn.Module):
    """A ViT's block sequence with per-batch prompt tokens (replaces ``model.blocks``)."""

    def __init__(self, blocks: nn.Sequential, num_prefix_tokens: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.num_prefix_tokens = num_prefix_tokens
        self.tokens: torch.Tensor | None = None  # (B, n, D), set before each forward
        self.outputs: torch.Tensor | None = None  # (B, n, D) after the last block

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> nn.Module:
        return self.blocks[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens is None:
            return self.blocks(x)
        p, n = self.num_prefix_tokens, self.tokens.shape[1]
        x = torch.cat([x[:, :p], self.tokens.to(x.dtype), x[:, p:]], dim=1)
        x = self.blocks(x)
        self.outputs = x[:, p : p + n]
        return torch.cat([x[:, :p], x[:, p + n :]], dim=1)


def attach_input_prompts(model: nn.Module) -> InputPrompts:
    """Replace a timm ViT's ``blocks`` by an ``InputPrompts`` wrapper; returns it."""
    wrapper = InputPrompts(vit_blocks(model), model.num_prefix_tokens)
    model.blocks = wrapper
    return wrapper


class PrefixAttention(nn.Module):
    """A timm ``Attention`` whose keys and values get per-batch prefix tokens.

    ``prefix`` is ``(keys, values)``, each (B, L, D), or None (the plain layer).
    """

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        for name in ("qkv", "num_heads", "head_dim", "q_norm", "k_norm", "proj"):
            if not hasattr(attn, name):
                raise TypeError(
                    f"{type(attn).__name__} lacks `{name}`: prefixes need timm Attention"
                )
        if getattr(attn, "gate", None) is not None:
            raise TypeError("gated attention is not supported by prefix tuning")
        self.attn = attn
        self.prefix: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        a = self.attn
        if self.prefix is None:
            return a(x, attn_mask=attn_mask, **kwargs)
        if attn_mask is not None:
            raise ValueError("prefix tuning does not take an attention mask")
        batch, tokens, _ = x.shape
        qkv = a.qkv(x).reshape(batch, tokens, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        pk, pv = (
            t.to(x.dtype).reshape(batch, -1, a.num_heads, a.head_dim).transpose(1, 2)
            for t in self.prefix
        )
        dropout = a.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2), dropout_p=dropout
        )
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        out = getattr(a, "norm", nn.Identity())(out)
        return a.proj_drop(a.proj(out))


def attach_prefix(model: nn.Module, layers: list[int]) -> dict[int, PrefixAttention]:
    """Wrap the attention of the given blocks of a timm ViT with ``PrefixAttention``."""
    blocks = vit_blocks(model)
    wrapped = {}
    for i in layers:
        if not 0 <= i < len(blocks):
            raise ValueError(f"block {i} does not exist: the ViT has {len(blocks)} blocks")
        block = blocks[i]
        if not isinstance(block.attn, PrefixAttention):
            block.attn = PrefixAttention(block.attn)
        wrapped[i] = block.attn
    return wrapped


def set_prefixes(
    layers: dict[int, PrefixAttention], prompts: dict[int, torch.Tensor] | None
) -> None:
    """Give each wrapped layer its prefix: ``prompts[i]`` is (B, 2L, D), split into keys and values."""
    for i, layer in layers.items():
        if prompts is None or i not in prompts:
            layer.prefix = None
        else:
            half = prompts[i].shape[1] // 2
            layer.prefix = (prompts[i][:, :half], prompts[i][:, half:])


def cosine_to_keys(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(B, M) cosine similarity of each query to each key."""
    return F.normalize(queries.float(), dim=1) @ F.normalize(keys.float(), dim=1).T


class PromptPool(nn.Module):
    """``size`` prompts of ``shape`` with learnable keys, selected by cosine key-query similarity.

    Keys and prompts are initialised uniformly in [-1, 1] (L2P's ``uniform``).
    """

    def __init__(self, size: int, shape: tuple[int, ...], key_dim: int) -> None:
        super().__init__()
        self.keys = nn.Parameter(torch.empty(size, key_dim).uniform_(-1, 1))
        self.prompts = nn.Parameter(torch.empty(size, *shape).uniform_(-1, 1))

    def __len__(self) -> int:
        return self.prompts.shape[0]

    def select(
        self, queries: torch.Tensor, top_k: int, forced: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``top_k`` most similar prompts per query, or the ``forced`` indices (B, top_k).

        Returns (prompts (B, top_k, *shape), indices (B, top_k), pull): ``pull`` is
        the batch mean of the summed similarity of the chosen keys, which the
        methods *subtract* from the loss (L2P's surrogate loss).
        """
        similarity = cosine_to_keys(queries, self.keys)
        indices = similarity.topk(top_k, dim=1).indices if forced is None else forced
        pull = similarity.gather(1, indices).sum(dim=1).mean()
        return self.prompts[indices], indices, pull


def orthogonal_rows(existing: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random unit rows orthogonal to each other and to the rows of ``existing``."""
    width = existing.shape[1]
    if len(existing) + count > width:
        raise ValueError(
            f"cannot make {len(existing) + count} orthogonal rows of width {width}: "
            "use a smaller pool"
        )
    fresh = torch.randn(count, width, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.cat([existing.double(), fresh]).T)
    return q[:, len(existing) :].T.to(existing.dtype)


def orthogonality_penalty(rows: torch.Tensor) -> torch.Tensor:
    """CODA-Prompt's ``mean((R R^T - I)^2)`` over the flattened rows of ``rows``."""
    flat = rows.reshape(len(rows), -1)
    return ((flat @ flat.T - torch.eye(len(flat), device=flat.device)) ** 2).mean()


class ComponentPool(nn.Module):
    """CODA-Prompt's per-layer components: keys K, attention vectors A, prompts P (pool x length x D)."""

    def __init__(
        self, size: int, length: int, dim: int, key_dim: int, tasks: int, seed: int = 0
    ) -> None:
        super().__init__()
        if size < tasks:
            raise ValueError(f"a pool of {size} components cannot be split over {tasks} tasks")
        self.per_task = size // tasks
        self.seed = seed
        self.keys = nn.Parameter(torch.zeros(size, key_dim))
        self.attention = nn.Parameter(torch.zeros(size, key_dim))
        self.prompts = nn.Parameter(torch.zeros(size, length, dim))

    def start_task(self, task: int) -> None:
        """Initialise task ``task``'s components orthogonal to the earlier ones (Gram-Schmidt)."""
        start, end = task * self.per_task, (task + 1) * self.per_task
        generator = torch.Generator().manual_seed(self.seed + 1009 * task)
        with torch.no_grad():
            for param in (self.keys, self.attention, self.prompts):
                flat = param.view(len(param), -1)
                flat[start:end] = orthogonal_rows(flat[:start].cpu(), end - start, generator).to(
                    flat
                )

    def active(self, task: int, train: bool) -> tuple[torch.Tensor, ...]:
        """(K, A, P) of the components of tasks 0..``task``; while training, the old ones detached."""
        start, end = task * self.per_task, (task + 1) * self.per_task
        parts = []
        for param in (self.keys, self.attention, self.prompts):
            old, new = param[:start], param[start:end]
            parts.append(torch.cat([old.detach() if train else old, new]))
        return tuple(parts)

    def compose(self, queries: torch.Tensor, task: int, train: bool) -> torch.Tensor:
        """(B, length, D) prompts: sum_m cos(q * A_m, K_m) P_m over the active components."""
        keys, attention, prompts = self.active(task, train)
        attended = F.normalize(queries.float()[:, None, :] * attention[None], dim=2)
        alpha = (attended * F.normalize(keys, dim=1)[None]).sum(dim=2)  # (B, M)
        return torch.einsum("bm,mld->bld", alpha, prompts)

    def orthogonality(self, task: int) -> torch.Tensor:
        """The orthogonality term over the active components' K, A and P."""
        keys, attention, prompts = self.active(task, train=False)
        return (
            orthogonality_penalty(keys)
            + orthogonality_penalty(attention)
            + orthogonality_penalty(prompts)
        )
