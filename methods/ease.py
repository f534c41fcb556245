"""EASE (Zhou et al., CVPR 2024): expandable subspace ensemble with semantic-guided prototype complement.

Each task trains a fresh AdaptFormer adapter per block (bottleneck 64) on the
frozen ViT with a temporary head over that task's classes, then freezes it:
adapter k spans "subspace" k. An image's feature is the concatenation over
subspaces of its embeddings with each adapter, and every class has one
prototype per subspace.

A class learned at task s has real prototypes (its training mean) in subspaces
0..s. Its prototype in a later subspace k is complemented from the classes that
have real data there (those of tasks >= k), weighted by their similarity to it
in its own subspace s:

    P_k(c) = sum_j softmax_j( cos(P_s(c), P_s(j)) ) P_k(j),   j in classes of tasks >= k

recomputed after every task as the set of such classes grows (PILOT's
``recalc_sim``). Scores are subspace-weighted cosine similarities:

    score(x, c) = sum_k w(c, k) cos(f_k(x), P_k(c)),  w = 1 for k = task(c), alpha / (T - 1) otherwise

with T the number of tasks learned (PILOT's ``use_reweight``, alpha = 0.1).

Defaults: PILOT's ImageNet-R configuration (``exps/ease_inr.json``): 20 epochs,
SGD lr 0.05, batch 16, weight decay 0.005, cosine, bottleneck 64. The temporary
head each adapter trains with is a Linear (``head=linear``) or, as PILOT's
``proxy_fc`` (an ``EaseCosineLinear``: learned scale times the cosine), ``head=cosine``.
"""

from __future__ import annotations

import uuid

import torch
import torch.nn.functional as F
from torch import nn

from clbench.data import Inputs, Samples
from clbench.errors import ConfigError
from clbench.kernels import prototype_scores
from clbench.learner import Learner
from clbench.methods.heads import HEAD_KINDS, make_head
from clbench.methods.peft.adapter import Adapter, attach_adapters
from clbench.methods.peft.common import count_parameters
from clbench.methods.vit_common import AdapterView, TaskAdapters, old_class_count, trainable_vit
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, classification_step, fit, image_batches, resolve_train


def complement_prototypes(prototypes: torch.Tensor, class_task: torch.Tensor) -> torch.Tensor:
    """Fill P_k(c) for every class c of task s < k from the classes with real data in subspace k.

    ``prototypes`` is (C, T, D) with real entries wherever k <= task(c); the
    others are overwritten with EASE's similarity-weighted combination.
    """
    out = prototypes.clone()
    tasks = prototypes.shape[1]
    for k in range(1, tasks):
        donors = class_task >= k
        for s in range(k):
            old = class_task == s
            if not old.any():
                continue
            similarity = (
                F.normalize(prototypes[old, s], dim=1) @ F.normalize(prototypes[donors, s], dim=1).T
            )
            out[old, k] = similarity.softmax(dim=1) @ prototypes[donors, k]
    return out


def ease_scores(
    features: torch.Tensor, prototypes: torch.Tensor, class_task: torch.Tensor, alpha: float
) -> torch.Tensor:
    """(n, C) scores of (n, T, D) subspace features against (C, T, D) prototypes."""
    tasks = prototypes.shape[1]
    scores = torch.zeros(features.shape[0], prototypes.shape[0], device=features.device)
    for k in range(tasks):
        weight = torch.where(
            class_task.to(features.device) == k,
            torch.ones((), device=features.device),
            torch.full((), alpha / max(tasks - 1, 1), device=features.device),
        )
        scores += weight * prototype_scores(features[:, k], prototypes[:, k], "cosine")
    return scores


@register_method("ease")
class EASE(Learner):
    """One adapter per task on a frozen ViT, concatenated subspaces, complemented prototypes."""

    # Every task must bring new classes: a subspace per task spans that task's classes.
    protocols = frozenset({"class-incremental", "task-incremental"})

    def __init__(
        self,
        bottleneck: int = 64,
        adapter_scale: float = 0.1,
        dropout: float = 0.1,
        alpha: float = 0.1,
        head: str = "linear",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if head not in HEAD_KINDS:
            raise ConfigError(f"unknown head {head!r}", f"use one of {', '.join(HEAD_KINDS)}")
        self.head = head
        self.train = resolve_train(self.default_train(), train)
        self.bottleneck = bottleneck
        self.adapter_scale = adapter_scale
        self.dropout = dropout
        self.alpha = alpha
        self.net: nn.Module | None = None
        self.blocks: list[TaskAdapters] = []
        self.prototypes = torch.empty(0)
        self.class_task = torch.empty(0, dtype=torch.long)
        self.tasks_learned = 0
        self.run_id = uuid.uuid4().hex[:12]

    @staticmethod
    def default_train() -> TrainConfig:
        """Each task's adapter schedule (PILOT ImageNet-R: init and later sessions alike)."""
        return TrainConfig(
            epochs=20,
            lr=0.05,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=0.005,
            schedule="cosine",
            batch_size=16,
        )

    def new_adapter(self, dim: int) -> Adapter:
        return Adapter(dim, self.bottleneck, self.adapter_scale, self.dropout)

    def new_head(self, classes: int) -> nn.Module:
        """The temporary classifier a task's adapter trains with (over that task's classes)."""
        return make_head(self.head, self.net.feature_dim, classes)

    def features(self, index: int, samples: Samples | Inputs) -> torch.Tensor:
        """Embeddings with task ``index``'s frozen adapter (cached in memory for the run)."""
        view = AdapterView(self.net, self.blocks, index)
        return self.ctx.features(view, f"ease-{self.run_id}/adapter{index}", samples, persist=False)

    def learn(self, task: TrainTask) -> None:
        classes = [int(c) for c in task.classes if c >= len(self.class_task)]
        if not classes:
            raise ConfigError(
                "EASE needs new classes in every task (class-incremental scenarios)",
                "use a class-incremental scenario, e.g. --scenario emoji-cil",
            )
        if self.net is None:
            net = trainable_vit(self.ctx, "ease")
            wrapped = attach_adapters(
                net.model, factory=lambda _i, dim: TaskAdapters(self.new_adapter(dim))
            )
            self.blocks = [block.branch for block in wrapped]
            self.net = net.to(self.ctx.device)
        self._train_adapter(task, known=old_class_count(task.seen_classes, len(classes)))
        labels = torch.from_numpy(task.train.labels)
        new = torch.stack(
            [
                torch.stack([f[labels == c].mean(dim=0) for c in classes])
                for f in (self.features(k, task.train) for k in range(self.tasks_learned + 1))
            ],
            dim=1,
        )  # (new classes, T, D)
        old = self.prototypes.reshape(len(self.class_task), self.tasks_learned, new.shape[2])
        old = torch.cat([old, old.new_zeros(len(old), 1, new.shape[2])], dim=1)
        self.class_task = torch.cat([self.class_task, torch.full((len(classes),), task.index)])
        self.tasks_learned += 1
        self.prototypes = complement_prototypes(torch.cat([old, new]), self.class_task)

    def _train_adapter(self, task: TrainTask, known: int) -> None:
        device = self.ctx.device
        for block in self.blocks:
            if self.tasks_learned > 0:
                block.current = self.new_adapter(block.current.dim).to(device)
            block.current.requires_grad_(True)
        head = self.new_head(task.seen_classes - known).to(device)
        model = nn.Sequential(self.net, head)
        batches = image_batches(
            task.train,
            self.net.transform(train=True),
            self.train.batch_size,
            seed=self.ctx.seed + task.index,
        )
        classify = classification_step(model, device)

        def step(batch):
            images, labels = batch
            return classify((images, labels - known))  # the temporary head has this task's classes

        fit(
            [p for b in self.blocks for p in b.current.parameters()] + list(head.parameters()),
            batches,
            step,
            self.train,
            device,
            desc=f"ease task {task.index}",
            modules=[model],
        )
        for block in self.blocks:
            block.current.requires_grad_(False)
            block.snapshot()

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.tasks_learned, "predict() called before learn()"
        device = self.ctx.device
        features = torch.stack(
            [self.features(k, inputs) for k in range(self.tasks_learned)], dim=1
        ).to(device)
        return ease_scores(features, self.prototypes.to(device), self.class_task, self.alpha).cpu()

    def trainable_parameters(self) -> int:
        return sum(count_parameters(b.saved, trainable_only=False) for b in self.blocks)
