"""Sequentially trained linear head on frozen features: the lower-bound baseline.

Each task trains the (grown) head with cross-entropy over all seen classes on
that task's data only, with no replay and no masking, so it shows how much a
naive classifier forgets on top of a frozen network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbench.data import Samples
from clbench.learner import Learner
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, tensor_batches


def grow_linear(head: nn.Linear | None, in_features: int, out_features: int) -> nn.Linear:
    """A Linear with ``out_features`` outputs whose first rows copy ``head``'s."""
    grown = nn.Linear(in_features, out_features)
    if head is not None:
        with torch.no_grad():
            grown.weight[: head.out_features] = head.weight
            grown.bias[: head.out_features] = head.bias
    return grown


@register_method("linear")
class SequentialLinear(Learner):
    """Linear head on frozen features trained task after task (no replay): lower bound."""

    def __init__(
        self, epochs: int = 30, lr: float = 0.05, batch_size: int = 32, weight_decay: float = 0.0
    ) -> None:
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.head: nn.Linear | None = None

    def learn(self, task: TrainTask) -> None:
        features = self.ctx.frozen_features(task.train)
        labels = torch.from_numpy(task.train.labels)
        self.head = grow_linear(self.head, features.shape[1], task.seen_classes).to(self.ctx.device)
        cfg = TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
        )
        head, device = self.head, self.ctx.device

        def step(batch):
            x, y = (t.to(device) for t in batch)
            logits = head(x)
            return F.cross_entropy(logits, y), logits, y

        batches = tensor_batches(
            features, labels, batch_size=self.batch_size, seed=self.ctx.seed + task.index
        )
        fit(
            head.parameters(),
            batches,
            step,
            cfg,
            device,
            desc=f"linear task {task.index}",
            modules=[head],
        )

    @torch.no_grad()
    def predict(self, samples: Samples, task_id: int | None = None) -> torch.Tensor:
        assert self.head is not None, "predict() called before learn()"
        return self.head(self.ctx.frozen_features(samples).to(self.ctx.device)).cpu()

    def trainable_parameters(self) -> int:
        return 0 if self.head is None else sum(p.numel() for p in self.head.parameters())
