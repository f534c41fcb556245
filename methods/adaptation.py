"""First-session adaptation shared by ADAM/APER and FSA: train a copy of the PTM on task 0, freeze it.

``adapt_first_session`` copies the run's backbone, lets ``prepare`` attach a
parameter-efficient module (or leave the whole body trainable), trains it with
a temporary head (``linear``, or PILOT's scaled ``cosine``) on the first task
through the shared loop, then
freezes it. The adapted network gets its own feature-cache id (the frozen
backbone's id plus a digest of the adapted weights), and its features are
kept in memory only: no later run can reuse them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from clbench.backbones import Backbone
from clbench.context import RunContext
from clbench.data import Inputs, Samples
from clbench.methods.heads import make_head
from clbench.methods.peft import batchnorms, count_parameters, freeze
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, TrainLog, classification_step, fit, image_batches


@dataclass
class Adapted:
    """A frozen adapted copy of the backbone and how it was obtained."""

    backbone: Backbone
    extractor_id: str
    trained_parameters: int
    log: TrainLog

    def features(self, ctx: RunContext, samples: Samples | Inputs) -> torch.Tensor:
        return ctx.features(self.backbone, self.extractor_id, samples, persist=False)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 (16 hex) of every parameter and buffer: names the adapted network in the cache."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()[:16]


def adapt_first_session(
    ctx: RunContext,
    task: TrainTask,
    prepare: Callable[[nn.Module], None],
    cfg: TrainConfig,
    tag: str,
    freeze_batchnorm: bool = True,
    head: str = "linear",
    head_dropout: float = 0.0,
) -> Adapted:
    """Adapt a copy of ``ctx.backbone`` on ``task`` and freeze it.

    ``prepare(model)`` receives the copy's underlying network with every parameter
    trainable; it freezes what must not train and attaches PEFT modules. With
    ``freeze_batchnorm`` the BatchNorm statistics of a partly frozen body stay put
    (they belong to the pretrained network, not to the few first-task images).
    ``head`` is the temporary classifier's kind (``clbench.methods.heads.make_head``);
    ``head_dropout`` > 0 drops features before it while training (FSA's code: 0.5).
    """
    backbone = ctx.new_backbone()
    prepare(backbone.model)
    if ctx.device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)
    classifier = make_head(head, backbone.feature_dim, task.seen_classes).to(ctx.device)
    trained = count_parameters(backbone)
    fully_trainable = trained == count_parameters(backbone, trainable_only=False)
    keep_eval = batchnorms(backbone) if freeze_batchnorm and not fully_trainable else []
    batches = image_batches(
        task.train, backbone.transform(train=True), cfg.batch_size, seed=ctx.seed + task.index
    )
    dropout = [nn.Dropout(head_dropout)] if head_dropout > 0 else []
    model = nn.Sequential(backbone, *dropout, classifier)
    log = fit(
        list(backbone.parameters()) + list(classifier.parameters()),
        batches,
        classification_step(model, ctx.device),
        cfg,
        ctx.device,
        desc=f"adapt {tag}",
        modules=[model],
        eval_modules=keep_eval,
    )
    freeze(backbone).eval()
    extractor_id = f"{ctx.backbone.cache_id}+{tag}@{weights_digest(backbone)}"
    return Adapted(backbone, extractor_id, trained, log)
