"""``nn.Linear`` layers on the measured-fastest CPU product (``products.matmul_nt``).

A language model on the CPU spends most of its time in its linear layers (61% of
a SmolLM2 choice-scoring pass, sampled with py-spy), and torch's own ``addmm``
goes through MKL, which takes a generic path on non-Intel CPUs: on this project's
AMD EPYC, one thread, 1,200 tokens through SmolLM2's shapes, oneDNN was 2.3-3.1x
faster (``benchmarks/lm_linear.py``). ``accelerate_linears(model)`` turns every
plain ``nn.Linear`` of a model into a :class:`CalibratedLinear`: same parameters,
same state dict, still an ``nn.Linear`` (peft wraps it as before), whose forward
runs ``matmul_nt`` (torch or oneDNN, never numpy: see its docstring) for fp32 CPU
inputs outside autocast and ``nn.Linear``'s own forward otherwise. The backward pass stays on torch (``mm``), so training gets the
forward's share of the gain. Results differ from torch's only by summation order.
"""

from __future__ import annotations

import torch
from torch import nn

from clbench.kernels.products import matmul_nt


class _CalibratedLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        # The input is kept only to form the weight's gradient: under LoRA the base weights
        # are frozen, and keeping every layer's input would hold a second copy of the
        # activations (the MLP's down projection input is the widest tensor of a block).
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.has_bias = bias is not None
        flat = x.reshape(-1, x.shape[-1])
        return matmul_nt(flat, weight, bias, numpy=False).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(flat, weight).reshape(*grad.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(flat.T, x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        return grad_x, grad_w, grad_b


class CalibratedLinear(nn.Linear):
    """An ``nn.Linear`` whose fp32 CPU forward runs on the calibrated product library."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        ):
            return _CalibratedLinearFn.apply(x, self.weight, self.bias)
        return super().forward(x)


def accelerate_linears(model: nn.Module) -> int:
    """Make every plain ``nn.Linear`` in ``model`` a :class:`CalibratedLinear` (in place:
    the class changes, parameters and hooks stay); returns how many were changed."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = CalibratedLinear
            changed += 1
    return changed
