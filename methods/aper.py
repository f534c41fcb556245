"""ADAM / APER (Zhou et al. 2023): adapt the PTM on the first task only, then prototypes.

Task 0: a copy of the PTM is adapted with a parameter-efficient module
(``peft=adapter | vpt_shallow | vpt_deep | ssf``) or fully fine-tuned
(``full``), with a temporary linear head, then frozen. Every task (task 0
included, after adaptation): each class's prototype is the mean of the
concatenation [frozen PTM feature, adapted feature] of its training images
(test-time transform); scores are cosine similarities. The temporary head of
the adaptation is a Linear (``adapt_head=linear``) or, as PILOT's
``aper_*`` learners train it (their ``SimpleVitNet`` fc is a ``CosineLinear``),
a learned-scale cosine classifier (``adapt_head=cosine``). Linear is the default
because the cosine head's scale starts at 1 and, on clbench's short first
sessions, its adapter does not train (12 % training accuracy after the default 20
epochs on emoji-cil, APER then scoring SimpleCIL's number; Linear: 41-43 %, Ā
+1.4 to +2.3); see reports/fidelity.md, section 5. The frozen half comes
from the persistent feature cache, the adapted half from the in-run cache.

Training defaults (``--set train.KEY=...``): SGD (momentum 0.9), lr 0.01 (0.001
for ``full``), weight decay 5e-4, batch 32, cosine schedule, 20 epochs: the emoji
first task has about 85 images (3 steps per epoch), and 5 epochs left the adapter
at 40% training accuracy.

Adapter and VPT need a ViT backbone (``--backbone dinov2-vits14``); SSF and full
fine-tuning also work on the CNN default.
"""

from __future__ import annotations

import torch
from torch import nn

from clbench.data import Inputs, Samples
from clbench.errors import ConfigError
from clbench.methods.adaptation import Adapted, adapt_first_session
from clbench.methods.base import PrototypeLearner
from clbench.methods.heads import HEAD_KINDS
from clbench.methods.peft import attach_adapters, attach_ssf, attach_vpt, freeze
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, resolve_train

PEFT_CHOICES = ("adapter", "vpt_shallow", "vpt_deep", "ssf", "full")
VIT_ONLY = ("adapter", "vpt_shallow", "vpt_deep")


@register_method("aper")
class APER(PrototypeLearner):
    """ADAM/APER: first-task PEFT adaptation, cosine prototypes on [frozen, adapted] features."""

    metric = "cosine"

    def __init__(
        self,
        peft: str = "adapter",
        bottleneck: int = 16,
        adapter_scale: float = 0.1,
        num_prompts: int = 5,
        adapt_head: str = "linear",
        train: TrainConfig | dict | None = None,
    ) -> None:
        super().__init__()
        if peft not in PEFT_CHOICES:
            raise ConfigError(f"unknown peft {peft!r}", f"use one of {', '.join(PEFT_CHOICES)}")
        if adapt_head not in HEAD_KINDS:
            raise ConfigError(
                f"unknown adapt_head {adapt_head!r}", f"use one of {', '.join(HEAD_KINDS)}"
            )
        self.peft = peft
        self.bottleneck = bottleneck
        self.adapter_scale = adapter_scale
        self.num_prompts = num_prompts
        self.adapt_head = adapt_head
        self.train = resolve_train(self.default_train(), train)
        self.adapted: Adapted | None = None

    def default_train(self) -> TrainConfig:
        # Full fine-tuning moves every weight: a ten times smaller step than the PEFT modules.
        lr = 0.001 if self.peft == "full" else 0.01
        return TrainConfig(
            epochs=20, lr=lr, optimizer="sgd", schedule="cosine", batch_size=32, weight_decay=5e-4
        )

    def prepare(self, model: nn.Module) -> None:
        if self.peft in VIT_ONLY and not hasattr(model, "embed_dim"):
            raise ConfigError(
                f"peft={self.peft} needs a ViT backbone, this one is {type(model).__name__}",
                "use --backbone dinov2-vits14, or --set peft=ssf or peft=full",
            )
        if self.peft == "full":
            return
        freeze(model)
        if self.peft == "adapter":
            attach_adapters(model, bottleneck=self.bottleneck, scale=self.adapter_scale)
        elif self.peft == "ssf":
            attach_ssf(model)
        else:
            attach_vpt(model, num_prompts=self.num_prompts, deep=self.peft == "vpt_deep")

    def learn(self, task: TrainTask) -> None:
        if self.adapted is None:
            self.adapted = adapt_first_session(
                self.ctx,
                task,
                self.prepare,
                self.train,
                tag=f"aper-{self.peft}",
                head=self.adapt_head,
            )
        super().learn(task)

    def embed(self, samples: Samples | Inputs) -> torch.Tensor:
        assert self.adapted is not None, "embed() before the first task was learned"
        return torch.cat(
            [self.ctx.frozen_features(samples), self.adapted.features(self.ctx, samples)], dim=1
        )

    def trainable_parameters(self) -> int:
        return 0 if self.adapted is None else self.adapted.trained_parameters

    def extra_results(self) -> dict:
        if self.adapted is None:
            return {}
        return {
            "adaptation_log": self.adapted.log.to_dict(),
            "adapted_extractor": self.adapted.extractor_id,
        }
