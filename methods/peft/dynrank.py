"""Rank-gated LoRA (dynamic rank-selective LoRA, CoDyRA): one learnable gate per rank.

The update of a layer is ``sum_i w_i B[:, i] A[i, :]`` (``B diag(w) A``): A is
Kaiming-uniform, B zero (so the layer starts as the pretrained one), and the
gates ``w`` start ``randn``. After each optimiser step from a set fraction of
the task on, ``GateThreshold`` applies the proximal step of an L1 penalty on
the gates, ``w <- sign(w) max(|w| - kappa, 0)``, with ``kappa`` ramped up to its
maximum; ranks whose gate reaches zero contribute nothing. After the task
``merge_dynrank`` drops the zero-gate ranks, adds ``B diag(w) A`` of the rest
into the weights and restores the original modules, so inference costs what
the base model costs and the next task starts a fresh LoRA on merged weights.

Which layers: every ``nn.Linear`` whose attribute name is in ``targets``. A
fused projection (timm's ``qkv``) gets one gated LoRA per output chunk, so q,
k and v have their own ranks; ``nn.MultiheadAttention`` (open_clip's towers)
is wrapped whole: its fused ``in_proj_weight`` gets separate q, k, v LoRAs and
its ``out_proj`` a fourth. Hugging Face language models' ``q_proj``, ``k_proj``,
``v_proj``, ``o_proj`` and MLP projections are ordinary Linears.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clbench.methods.peft.lora import LoRALinear

#: timm ViT (qkv, proj, fc1, fc2), open_clip MLP (c_fc, c_proj), Hugging Face decoders.
TIMM_TARGETS = ("qkv", "proj", "fc1", "fc2")
CLIP_TARGETS = ("attn", "c_fc", "c_proj")
HF_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = TIMM_TARGETS + CLIP_TARGETS + HF_TARGETS
#: Linear layers whose output concatenates several projections, and how many.
FUSED = {"qkv": 3}


class GatedLoRA(nn.Module):
    """The low-rank update ``B diag(w) A`` of one (out, in) weight, on its own.

    ``gated=False`` fixes ``w`` at ones (not trained): plain LoRA with scaling 1,
    the sequential-LoRA baseline on exactly the same layers.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, gated: bool = True) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.lora_a = nn.Parameter(torch.empty(rank, in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))
        gate = torch.randn(rank) if gated else torch.ones(rank)
        self.gate = nn.Parameter(gate, requires_grad=gated)
        # Same initialisation as the plain LoRA module, so the two compare fairly.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    @property
    def rank(self) -> int:
        """Ranks still active (nonzero gate)."""
        return int(torch.count_nonzero(self.gate.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x @ self.lora_a.T) * self.gate) @ self.lora_b.T

    def delta(self) -> torch.Tensor:
        """``B diag(w) A``: what merging adds to the weight."""
        return (self.lora_b * self.gate) @ self.lora_a

    @torch.no_grad()
    def prune(self) -> int:
        """Drop the ranks whose gate is zero (in place); returns the ranks kept."""
        keep = self.gate != 0
        self.lora_a = nn.Parameter(self.lora_a[keep].clone())
        self.lora_b = nn.Parameter(self.lora_b[:, keep].clone())
        self.gate = nn.Parameter(self.gate[keep].clone(), requires_grad=self.gate.requires_grad)
        return int(keep.sum())


class DynRankLinear(nn.Module):
    """``base(x)`` plus one gated LoRA per output chunk (``chunks`` > 1 for fused q/k/v)."""

    def __init__(
        self, base: nn.Linear, rank: int = 16, chunks: int = 1, gated: bool = True
    ) -> None:
        super().__init__()
        if base.out_features % chunks:
            raise ValueError(f"{base.out_features} outputs do not split into {chunks} chunks")
        self.base = base
        size = base.out_features // chunks
        self.adapters = nn.ModuleList(
            GatedLoRA(base.in_features, size, rank, gated) for _ in range(chunks)
        )

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (open_clip reads ``mlp.c_fc.weight.dtype`` for its casts)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = torch.cat([a(x) for a in self.adapters], dim=-1)
        return self.base(x) + update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The base Linear with the kept ranks' update added to its weight."""
        for a in self.adapters:
            a.prune()
        delta = torch.cat([a.delta() for a in self.adapters], dim=0)
        self.base.weight += delta.to(self.base.weight)
        return self.base


class DynRankAttention(nn.Module):
    """An ``nn.MultiheadAttention`` whose q, k, v and output projections each get a gated LoRA.

    The fused ``in_proj_weight`` is one tensor, so the LoRAs cannot sit beside a
    Linear: the forward builds the adapted weights ``W + B diag(w) A`` and runs
    the same functional attention the module runs (an exact equivalent of
    adapting separate q, k, v Linears, as the reference does).
    """

    def __init__(self, base: nn.MultiheadAttention, rank: int = 16, gated: bool = True) -> None:
        super().__init__()
        if not base._qkv_same_embed_dim or base.in_proj_weight is None:
            raise TypeError("DynRankAttention needs a MultiheadAttention with a fused in_proj")
        self.base = base
        d = base.embed_dim
        self.q, self.k, self.v, self.out = (GatedLoRA(d, d, rank, gated) for _ in range(4))

    @property
    def adapters(self) -> list[GatedLoRA]:
        return [self.q, self.k, self.v, self.out]

    def _in_delta(self) -> torch.Tensor:
        return torch.cat([self.q.delta(), self.k.delta(), self.v.delta()], dim=0)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        base = self.base
        batched = query.dim() == 3
        if base.batch_first and batched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        out, weights = F.multi_head_attention_forward(
            query,
            key,
            value,
            base.embed_dim,
            base.num_heads,
            base.in_proj_weight + self._in_delta(),
            base.in_proj_bias,
            base.bias_k,
            base.bias_v,
            base.add_zero_attn,
            base.dropout,
            base.out_proj.weight + self.out.delta(),
            base.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if base.batch_first and batched:
            out = out.transpose(0, 1)
        return out, weights

    @torch.no_grad()
    def merged(self) -> nn.MultiheadAttention:
        for a in self.adapters:
            a.prune()
        self.base.in_proj_weight += self._in_delta().to(self.base.in_proj_weight)
        self.base.out_proj.weight += self.out.delta().to(self.base.out_proj.weight)
        return self.base


DynRankModule = DynRankLinear | DynRankAttention


def attach_dynrank(
    model: nn.Module,
    rank: int = 16,
    targets: Iterable[str] = DEFAULT_TARGETS,
    gated: bool = True,
) -> dict[str, DynRankModule]:
    """Wrap the layers of ``model`` named in ``targets``; returns the wrappers by module path.

    ``attn`` selects ``nn.MultiheadAttention`` modules; every other name selects
    plain ``nn.Linear`` layers of that attribute name (a Linear inside a wrapped
    attention, such as its ``out_proj``, is adapted by the attention wrapper).
    """
    targets = set(targets)
    found = []
    for path, parent in model.named_modules():
        if isinstance(parent, nn.MultiheadAttention | DynRankModule):
            continue  # their projections are handled by the attention wrapper
        for name, child in parent.named_children():
            if name not in targets:
                continue
            if isinstance(child, nn.MultiheadAttention) or type(child) is nn.Linear:
                found.append((f"{path}.{name}" if path else name, parent, name, child))
    if not found:
        raise ValueError(f"no layer named {sorted(targets)} in {type(model).__name__}")
    wrapped: dict[str, DynRankModule] = {}
    for path, parent, name, child in found:
        if isinstance(child, nn.MultiheadAttention):
            module: DynRankModule = DynRankAttention(child, rank, gated)
        else:
            module = DynRankLinear(child, rank, FUSED.get(name, 1), gated)
        setattr(parent, name, module.to(child_device(child)))
        wrapped[path] = module
    return wrapped


def child_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def merge_dynrank(model: nn.Module) -> dict[str, list[int]]:
    """Replace every wrapper by its merged base module; returns the ranks kept per layer.

    Plain ``LoRALinear`` wrappers are merged too, so the sequential-LoRA baseline
    uses the same call.
    """
    kept: dict[str, list[int]] = {}
    paths = {id(m): p for p, m in model.named_modules()}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DynRankModule):
                adapters = list(child.adapters)
                setattr(parent, name, child.merged())
                kept[paths[id(child)]] = [a.lora_a.shape[0] for a in adapters]
            elif isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
    return kept


def gates(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable gate of the gated LoRAs in ``model``."""
    return [m.gate for m in model.modules() if isinstance(m, GatedLoRA) and m.gate.requires_grad]


def active_ranks(model: nn.Module) -> dict[str, list[int]]:
    """Nonzero gates per wrapped layer (one count per q/k/v/out chunk)."""
    return {
        path: [a.rank for a in m.adapters]
        for path, m in model.named_modules()
        if isinstance(m, DynRankModule)
    }


@torch.no_grad()
def soft_threshold_(tensors: Iterable[torch.Tensor], kappa: float) -> None:
    """Proximal step of ``kappa * |w|_1``: ``w <- sign(w) * max(|w| - kappa, 0)``, in place.

    Note: the reference subtracts first and then zeroes ``|w| < kappa`` on the
    already-shrunk values, which also zeroes gates in ``[kappa, 2 kappa)``; this
    is the proximal operator as the paper states it.
    """
    for w in tensors:
        w.copy_(torch.sign(w) * torch.clamp(w.abs() - kappa, min=0.0))


@torch.no_grad()
def reference_threshold_(tensors: Iterable[torch.Tensor], kappa: float) -> None:
    """The gate update CoDyRA's code applies (``models/codyra.py``, ``train_model``'s
    ``if prune:`` block), in place: gates beyond ``kappa`` move ``kappa`` towards zero,
    then every gate whose magnitude is now below ``kappa`` is zeroed. In effect
    ``w <- 0`` for ``|w| < 2 kappa`` (``|w| = kappa`` exactly stays), else
    ``w - sign(w) kappa``: the proximal step plus a hard cut at ``2 kappa``.
    """
    for w in tensors:
        moved = torch.where(w.abs() > kappa, w - torch.sign(w) * kappa, w)
        w.copy_(torch.where(moved.abs() < kappa, torch.zeros_like(moved), moved))


#: ``paper``: the proximal operator the paper states; ``reference``: what its code computes.
GATE_RULES = {"paper": soft_threshold_, "reference": reference_threshold_}


class GateThreshold:
    """``fit``'s ``after_step`` hook: soft-threshold the gates from ``dense_fraction`` of the task on.

    As in the reference, the threshold walks ``linspace(0, max_kappa, levels)``
    one level every ``(total - dense) // levels`` steps once the dense phase is
    over, so it reaches ``max_kappa`` by the end of the task; the threshold is
    applied after every step past the dense phase, by ``rule`` (``GATE_RULES``).
    One difference: with fewer steps after the dense phase than levels, the
    reference's interval is 0 and its threshold never leaves 0 (nothing is
    pruned); here the levels are then as many as those steps, so a short task
    still ramps to ``max_kappa``.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        total_steps: int,
        max_kappa: float = 0.005,
        dense_fraction: float = 0.5,
        levels: int = 50,
        rule: str = "paper",
    ) -> None:
        if rule not in GATE_RULES:
            raise ValueError(f"unknown gate rule {rule!r}; use one of {sorted(GATE_RULES)}")
        self.threshold = GATE_RULES[rule]
        self.params = params
        self.dense = dense_fraction * total_steps
        remaining = max(int(total_steps - self.dense), 1)
        levels = min(levels, remaining)
        self.every = remaining // levels
        self.levels = np.linspace(0.0, max_kappa, levels)
        self.level = 0
        self.step = 0
        self.kappas: list[float] = []

    @property
    def kappa(self) -> float:
        return float(self.levels[min(self.level, len(self.levels) - 1)])

    def __call__(self) -> None:
        # ``step`` is the index of the iteration that just ran (0-based), as in the reference.
        step = self.step
        self.step += 1
        if step >= self.dense and step % self.every == 0:
            self.level += 1
        if step > self.dense:
            self.threshold(self.params, self.kappa)
            self.kappas.append(self.kappa)
