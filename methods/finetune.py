"""Baselines that train the whole network: sequential fine-tuning (lower bound) and joint (upper bound).

``finetune``: one copy of the PTM plus a head that grows with each task; every
task trains network and head with cross-entropy over all seen classes on that
task's data only (no replay, no masking), so old classes are forgotten.

``joint``: at task t, a fresh copy of the PTM and a fresh head are trained on
the union of the training data of tasks 0..t (the usual upper-bound curve: a
non-continual model trained on everything seen so far). It stores all data, so
it is a reference, not a continual method.

Both default to 1 epoch per task, which a 2-core CPU affords on the emoji data
but which leaves a fresh 87-way head under-trained: at that budget joint is
not an upper bound (emoji-cil: 12.9% last with 1 epoch, 42.7% with 5, see
reports/first-session-emoji/); raise ``--set train.epochs=`` where compute allows.
"""

from __future__ import annotations

import torch
from torch import nn

from clbench.backbones import Backbone
from clbench.data import Inputs, Samples, concat_samples
from clbench.features import embed_samples
from clbench.learner import Learner
from clbench.methods.heads import grow_linear
from clbench.methods.peft import count_parameters
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import (
    TrainConfig,
    TrainLog,
    classification_step,
    fit,
    image_batches,
    resolve_train,
)


class WholeNetworkLearner(Learner):
    """A trainable copy of the PTM with a linear head, trained through the shared loop."""

    def __init__(self, train: TrainConfig | dict | None = None) -> None:
        self.train = resolve_train(self.default_train(), train)
        self.backbone: Backbone | None = None
        self.head: nn.Linear | None = None
        self.logs: list[list[dict]] = []

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(
            epochs=1, lr=0.01, optimizer="sgd", schedule="cosine", batch_size=32, weight_decay=5e-4
        )

    def train_on(self, samples: Samples, seed: int, desc: str) -> TrainLog:
        assert self.backbone is not None and self.head is not None
        device = self.ctx.device
        model = nn.Sequential(self.backbone, self.head).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        batches = image_batches(
            samples, self.backbone.transform(train=True), self.train.batch_size, seed
        )
        log = fit(
            model.parameters(),
            batches,
            classification_step(model, device),
            self.train,
            device,
            desc=desc,
            modules=[model],
        )
        self.logs.append(log.to_dict())
        return log

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.backbone is not None and self.head is not None, (
            "predict() called before learn()"
        )
        model = nn.Sequential(self.backbone, self.head)
        return embed_samples(
            model,
            inputs,
            self.backbone.transform(train=False),
            self.ctx.device,
            self.ctx.batch_size,
            desc="predict",
        )

    def trainable_parameters(self) -> int:
        if self.backbone is None or self.head is None:
            return 0
        return count_parameters(self.backbone) + count_parameters(self.head)

    def extra_results(self) -> dict:
        return {"train_logs": self.logs}


@register_method("finetune")
class Finetune(WholeNetworkLearner):
    """Sequential fine-tuning of the whole network and a growing head, no replay: lower bound."""

    def learn(self, task: TrainTask) -> None:
        if self.backbone is None:
            self.backbone = self.ctx.new_backbone()
        self.head = grow_linear(self.head, self.backbone.feature_dim, task.seen_classes).to(
            self.ctx.device
        )
        self.train_on(task.train, self.ctx.seed + task.index, f"finetune task {task.index}")


@register_method("joint")
class Joint(WholeNetworkLearner):
    """Upper bound: at task t, train a fresh PTM copy and head on all data of tasks 0..t."""

    def __init__(self, train: TrainConfig | dict | None = None) -> None:
        super().__init__(train)
        self.seen: list[Samples] = []

    def learn(self, task: TrainTask) -> None:
        self.seen.append(task.train)
        self.backbone = self.ctx.new_backbone()
        self.head = nn.Linear(self.backbone.feature_dim, task.seen_classes).to(self.ctx.device)
        self.train_on(
            concat_samples(self.seen), self.ctx.seed + task.index, f"joint up to task {task.index}"
        )
