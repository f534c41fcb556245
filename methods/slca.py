"""SLCA (Zhang et al., ICCV 2023): slow learner with classifier alignment.

Slow learner: the whole pretrained network is fine-tuned on each task, but at
``backbone_lr_scale`` (1/100) of the head's learning rate, through the shared
loop's ``lr_scale`` parameter groups; the loss is the cross-entropy over the
current task's classes (old logits masked, as PILOT's ``logits[:, known:]``).

Classifier alignment: after each task the new classes' features under the
network of that moment are stored as Gaussians (mean, covariance + 1e-4 I); from
the second task on, the head is re-trained on ``samples_per_class`` draws per
seen class with SLCA's task-wise logit normalisation (temperature 0.1).

Defaults: PILOT's ImageNet-R configuration (``exps/slca_inr.json``): SGD lr
0.01, momentum 0.9, weight decay 5e-4, batch 64, 5 epochs, 3 alignment epochs,
256 draws per class. Not reproduced by default: the official code (and PILOT's
``models/slca.py:186-188``) scales the mean of each class of task t by
(0.9 + 0.1 (t + 1) / (T + 1)) before sampling at task T, which the paper does
not describe; ``old_mean_decay=True`` applies it. PILOT's alignment anneals its
rate per epoch (cosine, ``models/slca.py:171``); ``align_schedule="cosine"``
anneals clbench's per step (the default keeps the training schedule, constant).
PILOT restores the head to its state before the alignment after each task
(``models/slca.py:54,82``), so every alignment starts from the stage-1 rows;
``reset_alignment=True`` does the same (clbench's default keeps the aligned head).
PILOT's head rows start trunc-normal (std 0.02, bias 0); ``head_init="trunc-normal"``
does the same (clbench's default is ``nn.Linear``'s).
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import torch
from torch import nn

from clbench.backbones import Backbone
from clbench.data import Inputs, Samples
from clbench.learner import Learner
from clbench.methods.alignment import ClassGaussians, align_classifier
from clbench.methods.heads import HeadInit, grow_linear
from clbench.methods.peft import count_parameters
from clbench.methods.vit_common import masked_cross_entropy, old_class_count
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, TrainLog, fit, image_batches, resolve_train, to_device


@register_method("slca")
class SLCA(Learner):
    """Slow-learning backbone (lr x 1/100), Gaussian classifier alignment after each task."""

    # The alignment normalises logits per task, so every task must bring new classes.
    protocols = frozenset({"class-incremental", "task-incremental"})

    def __init__(
        self,
        backbone_lr_scale: float = 0.01,
        align_epochs: int = 3,
        samples_per_class: int = 256,
        logit_norm: float | None = 0.1,
        covariance_eps: float = 1e-4,
        old_mean_decay: bool = False,
        align_schedule: str | None = None,
        reset_alignment: bool = False,
        head_init: HeadInit = "default",
        train: TrainConfig | dict | None = None,
    ) -> None:
        self.train = resolve_train(self.default_train(), train)
        self.backbone_lr_scale = backbone_lr_scale
        self.align_epochs = align_epochs
        self.samples_per_class = samples_per_class
        self.logit_norm = logit_norm
        self.covariance_eps = covariance_eps
        self.old_mean_decay = old_mean_decay
        self.align_schedule = align_schedule
        self.reset_alignment = reset_alignment
        self.head_init = head_init
        self.unaligned_head: dict | None = None
        self.align_config()  # a bad align_schedule is refused now, not at the second task
        self.backbone: Backbone | None = None
        self.head: nn.Linear | None = None
        self.gaussians = ClassGaussians(covariance_eps)
        self.task_sizes: list[int] = []
        self.logs: list[dict] = []
        self.run_id = uuid.uuid4().hex[:12]

    @staticmethod
    def default_train() -> TrainConfig:
        """The head's schedule (PILOT ImageNet-R); the backbone runs at ``backbone_lr_scale``
        of its rate. PILOT's MultiStepLR at epoch 40: with 5 epochs the rate stays constant."""
        return TrainConfig(
            epochs=5,
            lr=0.01,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=5e-4,
            schedule="multistep",
            milestones=(40,),
            batch_size=64,
        )

    def align_config(self) -> TrainConfig:
        """The alignment: the same optimiser, ``align_epochs``, ``samples_per_class`` per batch."""
        aligned = replace(self.train, epochs=self.align_epochs, batch_size=self.samples_per_class)
        return replace(aligned, schedule=self.align_schedule) if self.align_schedule else aligned

    def sampled_gaussians(self) -> ClassGaussians:
        """The Gaussians the alignment draws from: with ``old_mean_decay``, the mean of each
        class of task t scaled by 0.9 + 0.1 (t + 1) / (T + 1) at task T (the official code's)."""
        if not self.old_mean_decay:
            return self.gaussians
        tasks = len(self.task_sizes)
        task_of = torch.repeat_interleave(torch.arange(tasks), torch.tensor(self.task_sizes))
        scale = 0.9 + 0.1 * (task_of[: len(self.gaussians)] + 1).float() / tasks
        scaled = ClassGaussians(self.covariance_eps)
        scaled.means = self.gaussians.means * scale[:, None]
        scaled.factors = self.gaussians.factors
        return scaled

    def parameter_groups(self) -> list[dict]:
        """The slow learner: backbone at ``backbone_lr_scale`` x the head's learning rate."""
        assert self.backbone is not None and self.head is not None
        return [
            {"params": list(self.backbone.parameters()), "lr_scale": self.backbone_lr_scale},
            {"params": list(self.head.parameters()), "lr_scale": 1.0},
        ]

    def learn(self, task: TrainTask) -> None:
        if self.backbone is None:
            self.backbone = self.ctx.new_backbone()
        device = self.ctx.device
        if self.reset_alignment and self.unaligned_head is not None:
            self.head.load_state_dict(self.unaligned_head)
        self.head = grow_linear(
            self.head, self.backbone.feature_dim, task.seen_classes, self.head_init
        ).to(device)
        known = old_class_count(task.seen_classes, len(task.classes))
        self.task_sizes.append(task.seen_classes - sum(self.task_sizes))
        backbone, head = self.backbone, self.head

        def step(batch):
            images, labels = batch
            labels = labels.to(device)
            logits = head(backbone(to_device(images, device))).float()
            return masked_cross_entropy(logits, labels, known), logits, labels

        batches = image_batches(
            task.train,
            backbone.transform(train=True),
            self.train.batch_size,
            seed=self.ctx.seed + task.index,
        )
        log = fit(
            self.parameter_groups(),
            batches,
            step,
            self.train,
            device,
            desc=f"slca task {task.index}",
            modules=[backbone, head],
        )
        record = {"task": task.index, "train": log.to_dict()}
        labels = torch.from_numpy(task.train.labels)
        classes = [int(c) for c in task.classes if c >= len(self.gaussians)]
        if classes:
            self.gaussians.add(self.embed(task.train, task.index), labels, classes)
        if task.index > 0 and self.align_epochs > 0:
            if self.reset_alignment:
                self.unaligned_head = {k: v.clone() for k, v in head.state_dict().items()}
            aligned: TrainLog = align_classifier(
                head,
                self.sampled_gaussians(),
                self.align_config(),
                device,
                seed=self.ctx.seed + 7919 * (task.index + 1),
                desc=f"slca task {task.index} alignment",
                logit_norm=self.logit_norm,
                task_sizes=self.task_sizes,
            )
            record["alignment"] = aligned.to_dict()
        self.logs.append(record)

    def embed(self, samples: Samples | Inputs, after_task: int) -> torch.Tensor:
        """Features of the network as it is after ``after_task`` (cached in memory for the run)."""
        extractor = f"slca-{self.run_id}/after-task{after_task}"
        return self.ctx.features(self.backbone.eval(), extractor, samples, persist=False)

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.head is not None, "predict() called before learn()"
        features = self.embed(inputs, len(self.task_sizes) - 1).to(self.ctx.device)
        return self.head.eval()(features).float().cpu()

    def trainable_parameters(self) -> int:
        if self.head is None:
            return 0
        return count_parameters(self.backbone) + count_parameters(self.head)

    def extra_results(self) -> dict:
        return {"train_logs": self.logs}
