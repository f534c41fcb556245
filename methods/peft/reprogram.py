"""Channel-wise lightweight reprogramming (CLR, Ge et al., ICCV 2023) with one slot per task.

A reprogramming layer is a depthwise 3x3 convolution without bias placed after a
frozen convolution and Dirac-initialised (each channel's kernel is a centred
1), so at initialisation the network computes exactly what it did before.
``variant="reduced"`` (the reference's default) wraps every convolution whose
kernel is not 1x1; ``"full"`` wraps all of them.

Continual use needs one set of reprogramming kernels, BatchNorm parameters and
statistics per task: ``ReprogrammedConv`` and ``TaskBatchNorm`` hold a
``ModuleList`` of per-task slots and run the active one. ``add_task`` appends
fresh slots (Dirac kernels, BatchNorms copied from the pretrained ones) and
freezes every earlier slot, so training task t cannot change task s < t.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

VARIANTS = ("reduced", "full")


def reprogram_kernel(channels: int) -> nn.Conv2d:
    """The CLR layer: depthwise 3x3, no bias, identity (Dirac) at initialisation."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    # groups=channels: one centred 1 per channel. With the default groups=1 dirac_
    # would set only channel 0 of a (C, 1, 3, 3) weight and zero the others.
    nn.init.dirac_(conv.weight, groups=channels)
    return conv


class TaskSlots(nn.Module):
    """Per-task copies of a module; ``active`` selects which one runs.

    Subclasses say how a task's fresh copy is made (``new_slot``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.slots = nn.ModuleList()
        self.active = 0

    new_slot: Callable[[], nn.Module]

    def add_slot(self) -> nn.Module:
        for old in self.slots:
            old.requires_grad_(False)
        slot = self.new_slot()
        self.slots.append(slot)
        return slot


class ReprogrammedConv(TaskSlots):
    """A frozen convolution followed by the active task's reprogramming kernel."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv.requires_grad_(False)

    def new_slot(self) -> nn.Conv2d:
        weight = self.conv.weight
        return reprogram_kernel(self.conv.out_channels).to(weight.device, weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slots[self.active](self.conv(x))


class TaskBatchNorm(TaskSlots):
    """One BatchNorm (weights and running statistics) per task, each a copy of the pretrained one."""

    def __init__(self, bn: nn.Module) -> None:
        super().__init__()
        # The pretrained layer is the template of every slot; it never runs itself.
        self.template = bn.requires_grad_(False)

    def new_slot(self) -> nn.Module:
        return copy.deepcopy(self.template).requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slots[self.active](x)


def _wrap(model: nn.Module, select, wrapper) -> list[nn.Module]:
    targets = [
        (parent, name, child)
        for parent in model.modules()
        if not isinstance(parent, TaskSlots)
        for name, child in parent.named_children()
        if select(child)
    ]
    wrapped = []
    for parent, name, child in targets:
        module = wrapper(child)
        setattr(parent, name, module)
        wrapped.append(module)
    return wrapped


def reprogrammable(conv: nn.Module, variant: str) -> bool:
    """Whether ``variant`` puts a reprogramming layer after ``conv``."""
    if not isinstance(conv, nn.Conv2d):
        return False
    return variant == "full" or tuple(conv.kernel_size) != (1, 1)


def attach_reprogramming(
    model: nn.Module, variant: str = "reduced", per_task_batchnorm: bool = True
) -> list[TaskSlots]:
    """Freeze ``model``, wrap its convolutions (and BatchNorms) in per-task slots; returns the wrappers.

    No slot exists yet: call ``add_task`` before the first forward pass.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown reprogramming variant {variant!r}; use one of {VARIANTS}")
    model.requires_grad_(False)
    convs = _wrap(model, lambda m: reprogrammable(m, variant), ReprogrammedConv)
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution to reprogram")
    norms = []
    if per_task_batchnorm:
        norms = _wrap(
            model, lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm), TaskBatchNorm
        )
    return convs + norms


def task_slots(model: nn.Module) -> list[TaskSlots]:
    return [m for m in model.modules() if isinstance(m, TaskSlots)]


def add_task(model: nn.Module) -> list[nn.Parameter]:
    """Append a fresh slot to every wrapper, freeze the older ones; returns the new parameters."""
    params: list[nn.Parameter] = []
    slots = task_slots(model)
    for wrapper in slots:
        params.extend(wrapper.add_slot().parameters())
    set_task(model, len(slots[0].slots) - 1)
    return params


def set_task(model: nn.Module, task: int) -> None:
    """Run task ``task``'s slots everywhere."""
    for wrapper in task_slots(model):
        if not 0 <= task < len(wrapper.slots):
            raise IndexError(f"no slot for task {task} (have {len(wrapper.slots)})")
        wrapper.active = task


def closed_form_parameters(model: nn.Module, variant: str = "reduced") -> dict[str, int]:
    """Extra parameters per task, from the un-wrapped network's shapes alone.

    Reprogramming: 9 x output channels for each wrapped convolution (depthwise 3x3,
    no bias); BatchNorm: weight and bias per channel.
    """
    convs = [m for m in model.modules() if reprogrammable(m, variant)]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return {
        "reprogram": sum(9 * c.out_channels for c in convs),
        "batchnorm": sum(2 * n.num_features for n in norms if n.affine),
    }


def slot_parameters(model: nn.Module, task: int) -> dict[str, int]:
    """Parameters stored in task ``task``'s slots, counted from the tensors themselves."""
    counts = {"reprogram": 0, "batchnorm": 0}
    for wrapper in task_slots(model):
        kind = "reprogram" if isinstance(wrapper, ReprogrammedConv) else "batchnorm"
        counts[kind] += sum(p.numel() for p in wrapper.slots[task].parameters())
    return counts
