"""Sequentially trained linear head on frozen features: the lower-bound baseline.

Each task trains the (grown) head with cross-entropy over all seen classes on
that task's data only, with no replay and no masking, so it shows how much a
naive classifier forgets on top of a frozen network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbench.data import Inputs
from clbench.learner import Learner
from clbench.methods.heads import grow_linear
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, resolve_train, tensor_batches


@register_method("linear")
class SequentialLinear(Learner):
    """Linear head on frozen features trained task after task (no replay): lower bound."""

    def __init__(self, train: TrainConfig | dict | None = None) -> None:
        self.train = resolve_train(self.default_train(), train)
        self.head: nn.Linear | None = None

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(epochs=30, lr=0.05, batch_size=32, weight_decay=0.0)

    def learn(self, task: TrainTask) -> None:
        features = self.ctx.frozen_features(task.train)
        labels = torch.from_numpy(task.train.labels)
        self.head = grow_linear(self.head, features.shape[1], task.seen_classes).to(self.ctx.device)
        head, device = self.head, self.ctx.device

        def step(batch):
            x, y = (t.to(device) for t in batch)
            logits = head(x)
            return F.cross_entropy(logits, y), logits, y

        batches = tensor_batches(
            features, labels, batch_size=self.train.batch_size, seed=self.ctx.seed + task.index
        )
        fit(
            head.parameters(),
            batches,
            step,
            self.train,
            device,
            desc=f"linear task {task.index}",
            modules=[head],
        )

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.head is not None, "predict() called before learn()"
        return self.head(self.ctx.frozen_features(inputs).to(self.ctx.device)).cpu()

    def trainable_parameters(self) -> int:
        return 0 if self.head is None else sum(p.numel() for p in self.head.parameters())
