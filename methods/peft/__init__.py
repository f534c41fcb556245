"""Parameter-efficient fine-tuning modules, attachable to timm ViTs (and, where it makes sense, CNNs).

| module | where | identity at init | attach |
| --- | --- | --- | --- |
| AdaptFormer ``Adapter`` | parallel to each ViT block's MLP | yes (up-projection zero) | ``attach_adapters`` |
| ``LoRALinear`` | beside ViT qkv/proj/fc1/fc2 Linears | yes (B zero) | ``attach_lora`` |
| VPT shallow / deep | prompt tokens before the first / every block | no (prompts are attended) | ``attach_vpt`` |
| ``SSF`` | scale-shift after Linear/LayerNorm (ViT), Conv/BatchNorm (CNN) | yes | ``attach_ssf`` |
| ``FiLM`` | gamma/beta after BatchNorm (CNN) and LayerNorm (ViT) | yes | ``attach_film`` |

Typical use: ``freeze(model)``, attach a module (its parameters are new and trainable),
train, then ``count_parameters(model)`` gives the trainable count.
"""

from clbench.methods.peft.adapter import (
    AdaptedBlock,
    Adapter,
    adapted_blocks,
    attach_adapters,
    detach_adapters,
    set_branch,
)
from clbench.methods.peft.common import (
    batchnorms,
    count_parameters,
    freeze,
    switched,
    train_only,
    unfreeze,
    vit_blocks,
)
from clbench.methods.peft.film import FiLM, attach_film
from clbench.methods.peft.lora import LoRALinear, attach_lora, merge_lora
from clbench.methods.peft.ssf import SSF, ChannelAffine, attach_ssf
from clbench.methods.peft.vpt import PromptedBlocks, attach_vpt

__all__ = [
    "AdaptedBlock",
    "Adapter",
    "ChannelAffine",
    "FiLM",
    "LoRALinear",
    "PromptedBlocks",
    "SSF",
    "adapted_blocks",
    "attach_adapters",
    "attach_film",
    "attach_lora",
    "attach_ssf",
    "attach_vpt",
    "batchnorms",
    "count_parameters",
    "detach_adapters",
    "freeze",
    "merge_lora",
    "set_branch",
    "switched",
    "train_only",
    "unfreeze",
    "vit_blocks",
]
