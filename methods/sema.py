"""SEMA: self-expansion of a pre-trained ViT with a mixture of adapters (Wang et al., CVPR 2025).

Every block gets an AdaptFormer adapter in parallel to its MLP, trained on the
first task and then frozen. In the last ``expand_layers`` blocks a block holds
a *mixture*: several adapters, each paired with a representation descriptor
(a linear autoencoder on the token mean of the block's input, trained with
MSE), mixed by an expandable softmax router (one ``Linear(d, 1)`` column per
adapter on the token mean; a column is frozen once its task ends).

On each later task the training images are scanned: for every mixture, each
descriptor's per-sample reconstruction loss is turned into a z-score against
that descriptor's running buffer of its last ``buffer_size`` training losses;
the block asks for a new adapter when the *minimum over its adapters* of the
batch-mean |z| exceeds ``expansion_threshold`` (no existing adapter explains
the data). The first such block (in depth order) gets one new adapter (at most
one per block per task); the new adapter, its router column and the head are
trained, then its descriptor, and the scan starts over, since the new adapter
changes what later blocks see. A task that triggers no expansion trains only
the head. Every decision is recorded (``extra_results``).

The head is linear over all seen classes; the loss masks old classes' logits.
Defaults are the official configuration for ImageNet-R (``exps/sema_inr_*``).
Where the official code differs from its own configuration, the configuration
is followed: its adapter ``forward`` applies neither the 0.1 scale nor the 0.1
dropout that its config and the paper give (``adapter_scale=1 dropout=0``
reproduces the code).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clbench.backbones import Backbone
from clbench.data import Inputs
from clbench.errors import ConfigError
from clbench.features import embed_samples
from clbench.learner import Learner
from clbench.methods.heads import grow_linear
from clbench.methods.peft.adapter import Adapter, attach_adapters
from clbench.methods.peft.common import count_parameters, switched, vit_blocks
from clbench.methods.vit_common import masked_cross_entropy, old_class_count, trainable_vit
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, image_batches, resolve_train, to_device

log = logging.getLogger(__name__)


class LossBuffer:
    """The last ``size`` reconstruction losses of one descriptor, for z-scores.

    Fewer than three losses give z = 0 (no evidence yet), as in the reference.
    """

    def __init__(self, size: int = 500) -> None:
        self.size = size
        self.values = torch.empty(0)

    def __len__(self) -> int:
        return len(self.values)

    def push(self, losses: torch.Tensor) -> None:
        self.values = torch.cat([self.values, losses.detach().float().cpu().flatten()])[
            -self.size :
        ]

    def z_scores(self, losses: torch.Tensor) -> torch.Tensor:
        """|loss - mean| / std (unbiased) against the buffer, per sample."""
        if len(self) <= 2:
            return torch.zeros_like(losses)
        mean, std = self.values.mean(), self.values.std().clamp_min(1e-12)
        return ((losses - mean.to(losses)) / std.to(losses)).abs()


class Descriptor(nn.Module):
    """A linear autoencoder on the token mean; its reconstruction error flags unfamiliar inputs."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(dim, hidden)
        self.decoder = nn.Linear(hidden, dim)
        for layer in (self.encoder, self.decoder):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
            nn.init.zeros_(layer.bias)

    def losses(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-sample MSE of reconstructing the mean token of ``tokens`` (B, N, D) -> (B,)."""
        pooled = tokens.mean(dim=1)
        return F.mse_loss(self.decoder(self.encoder(pooled)), pooled, reduction="none").mean(dim=1)


class AdapterMixture(nn.Module):
    """The adapters of one block, mixed by an expandable softmax router.

    Outside the expandable blocks it holds a single adapter and no descriptor.
    ``mode`` says what a forward pass also does: ``"scan"`` stores the block's
    expansion score (min over adapters of the batch-mean |z|) in ``score``;
    ``"descriptor"`` stores the newest descriptor's mean loss in ``descriptor_loss``
    and feeds its per-sample losses to the buffer.
    """

    def __init__(
        self,
        dim: int,
        make_adapter: Callable[[], nn.Module],
        descriptor_dim: int | None,
        buffer_size: int = 500,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.make_adapter = make_adapter
        self.descriptor_dim = descriptor_dim
        self.buffer_size = buffer_size
        self.adapters = nn.ModuleList()
        self.descriptors = nn.ModuleList()
        self.router = nn.ModuleList()
        self.buffers: list[LossBuffer] = []
        self.mode = "run"
        self.score: float | None = None
        self.descriptor_loss: torch.Tensor | None = None
        self.add_adapter()

    @property
    def expandable(self) -> bool:
        return self.descriptor_dim is not None

    def add_adapter(self) -> None:
        """Append an adapter and, in an expandable block, its router column and descriptor (all trainable)."""
        device = next(self.adapters[0].parameters()).device if len(self.adapters) else None
        self.adapters.append(self.make_adapter().to(device))
        if self.expandable:
            self.router.append(nn.Linear(self.dim, 1).to(device))
            self.descriptors.append(Descriptor(self.dim, self.descriptor_dim).to(device))
            self.buffers.append(LossBuffer(self.buffer_size))

    def freeze(self) -> None:
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "scan":
            self.score = self.expansion_score(x)
        elif self.mode == "descriptor":
            losses = self.descriptors[-1].losses(x)
            self.buffers[-1].push(losses)
            self.descriptor_loss = losses.mean()
        if len(self.adapters) == 1:
            return self.adapters[0](x)
        pooled = x.mean(dim=1)
        weights = torch.softmax(torch.cat([column(pooled) for column in self.router], dim=1), dim=1)
        outputs = torch.stack([adapter(x) for adapter in self.adapters], dim=1)  # (B, A, N, D)
        return (outputs * weights[:, :, None, None]).sum(dim=1)

    @torch.no_grad()
    def expansion_score(self, x: torch.Tensor) -> float:
        """Min over this block's adapters of the batch-mean |z| of their descriptors' losses."""
        scores = [
            buffer.z_scores(descriptor.losses(x)).mean()
            for descriptor, buffer in zip(self.descriptors, self.buffers, strict=True)
        ]
        return float(torch.stack(scores).min())

    def extra_repr(self) -> str:
        return f"adapters={len(self.adapters)}, expandable={self.expandable}"


def expansion_layers(depth: int, expand_layers: int | list[int]) -> list[int]:
    """Block indices (0-based) where SEMA may expand: the last ``k`` blocks, or an explicit list."""
    if isinstance(expand_layers, int):
        if not 0 <= expand_layers <= depth:
            raise ConfigError(
                f"expand_layers={expand_layers} but the ViT has {depth} blocks",
                f"use 0..{depth} (the last k blocks) or a list of block indices",
            )
        return list(range(depth - expand_layers, depth))
    layers = sorted({int(i) for i in expand_layers})
    if any(not 0 <= i < depth for i in layers):
        raise ConfigError(
            f"expand_layers={expand_layers} names blocks outside 0..{depth - 1}",
            "block indices are 0-based",
        )
    return layers


@register_method("sema")
class SEMA(Learner):
    """Self-expanding mixture of adapters: descriptors' z-scores decide when to add one (Wang et al. 2025)."""

    def __init__(
        self,
        descriptor_epochs: int = 20,
        descriptor_lr: float = 0.01,
        descriptor_dim: int | None = None,
        expansion_threshold: float = 2.0,
        buffer_size: int = 500,
        detect_batch_size: int = 128,
        expand_layers: int | list[int] = 3,
        bottleneck: int = 16,
        adapter_scale: float = 0.1,
        dropout: float = 0.1,
        train: TrainConfig | dict | None = None,
    ) -> None:
        self.train = resolve_train(self.default_train(), train)
        self.descriptor_epochs = descriptor_epochs
        self.descriptor_lr = descriptor_lr
        self.descriptor_dim = descriptor_dim
        self.expansion_threshold = expansion_threshold
        self.buffer_size = buffer_size
        self.detect_batch_size = detect_batch_size
        self.expand_layers = expand_layers
        self.bottleneck = bottleneck
        self.adapter_scale = adapter_scale
        self.dropout = dropout
        self.net: Backbone | None = None
        self.mixtures: dict[int, AdapterMixture] = {}
        self.head: nn.Linear | None = None
        self.tasks_learned = 0
        self.decisions: list[dict[str, Any]] = []
        self.adapters_per_task: list[dict[str, int]] = []

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        net = trainable_vit(self.ctx, "sema")
        depth, dim = len(vit_blocks(net.model)), net.model.embed_dim
        expandable = set(expansion_layers(depth, self.expand_layers))
        hidden = self.descriptor_dim or max(1, round(128 * dim / 768))  # 768 -> 128 in the paper
        make_adapter = partial(Adapter, dim, self.bottleneck, self.adapter_scale, self.dropout)

        def branch(index: int, width: int) -> AdapterMixture:
            return AdapterMixture(
                width, make_adapter, hidden if index in expandable else None, self.buffer_size
            )

        blocks = attach_adapters(net.model, factory=branch)
        self.mixtures = {i: block.branch for i, block in enumerate(blocks)}
        self.net = net.to(self.ctx.device)

    @staticmethod
    def default_train() -> TrainConfig:
        """The adapters' and head's schedule; the descriptors train with it at their own
        ``descriptor_epochs`` and ``descriptor_lr``."""
        return TrainConfig(
            epochs=20,
            lr=0.005,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=5e-4,
            schedule="cosine",
            batch_size=32,
        )

    def _batches(self, task: TrainTask, batch_size: int, salt: int):
        seed = self.ctx.seed + 1000 * task.index + salt
        return image_batches(task.train, self.net.transform(train=True), batch_size, seed)

    # -- learning ---------------------------------------------------------------------------
    def learn(self, task: TrainTask) -> None:
        if self.net is None:
            self._build()
        self.head = grow_linear(self.head, self.net.feature_dim, task.seen_classes).to(
            self.ctx.device
        )
        known = old_class_count(task.seen_classes, len(task.classes))
        if self.tasks_learned == 0:
            # First task: every block's adapter, then every expandable block's descriptor.
            self._train_adapters(task, known, "first adapters")
            self._train_descriptors(task, [m for m in self.mixtures.values() if m.expandable])
        elif not self._expand_until_stable(task, known):
            self._train_adapters(
                task, known, "head only"
            )  # every adapter is frozen: only the head moves
        for mixture in self.mixtures.values():
            mixture.freeze()
        self.tasks_learned += 1
        counts = {str(i): len(m.adapters) for i, m in self.mixtures.items() if m.expandable}
        self.adapters_per_task.append(counts)
        log.info("SEMA after task %d: adapters per expandable block %s", task.index, counts)

    def _train_adapters(self, task: TrainTask, known: int, what: str) -> None:
        """Train whatever is not frozen (new adapters and router columns) and the head, masked CE."""
        net, head, device = self.net, self.head, self.ctx.device

        def step(batch):
            images, labels = batch
            labels = labels.to(device)
            logits = head(net(to_device(images, device)))
            return masked_cross_entropy(logits, labels, known), logits, labels

        functional = [
            p
            for m in self.mixtures.values()
            for p in [*m.adapters.parameters(), *m.router.parameters()]
        ]
        params = [p for p in functional if p.requires_grad] + list(head.parameters())
        fit(
            params,
            self._batches(task, self.train.batch_size, salt=len(self.decisions)),
            step,
            self.train,
            device,
            desc=f"sema task {task.index} {what}",
            modules=[net, head],
        )

    def _train_descriptors(self, task: TrainTask, mixtures: list[AdapterMixture]) -> None:
        """Train the newest descriptor of each of ``mixtures``; their buffers fill meanwhile."""
        if not mixtures:
            return
        net, device = self.net, self.ctx.device

        def step(batch):
            net(to_device(batch[0], device))
            return sum(m.descriptor_loss for m in mixtures), None, None

        params = [p for m in mixtures for p in m.descriptors[-1].parameters()]
        with switched(mixtures, mode="descriptor"):
            fit(
                params,
                self._batches(task, self.train.batch_size, salt=500 + len(self.decisions)),
                step,
                replace(self.train, epochs=self.descriptor_epochs, lr=self.descriptor_lr),
                device,
                desc=f"sema task {task.index} descriptors",
                modules=[net],
            )

    def _expand_until_stable(self, task: TrainTask, known: int) -> bool:
        """Scan, expand the first block that asks for it, train, and scan again until none does."""
        expanded: set[int] = set()
        while True:
            layer, score = self._scan(task, expanded)
            if layer is None:
                return bool(expanded)
            mixture = self.mixtures[layer]
            mixture.add_adapter()
            expanded.add(layer)
            log.info(
                "SEMA task %d: block %d expands (z=%.3f) to %d adapters",
                task.index,
                layer,
                score,
                len(mixture.adapters),
            )
            self._train_adapters(task, known, f"new adapter in block {layer}")
            self._train_descriptors(task, [mixture])
            mixture.freeze()

    @torch.no_grad()
    def _scan(self, task: TrainTask, expanded: set[int]) -> tuple[int | None, float]:
        """The first (batch, block) whose expansion score passes the threshold, if any.

        Blocks that already expanded in this task are not eligible again. The
        decision and every block's highest score over the pass are recorded.
        """
        candidates = [m for i, m in self.mixtures.items() if m.expandable and i not in expanded]
        highest = {i: 0.0 for i, m in self.mixtures.items() if m in candidates}
        found: tuple[int | None, float] = (None, 0.0)
        net = self.net
        was_training = net.training
        net.eval()
        try:
            with switched(candidates, mode="scan"):
                for images, _ in self._batches(
                    task, self.detect_batch_size, salt=900 + len(self.decisions)
                ):
                    net(to_device(images, self.ctx.device))
                    for i in highest:
                        highest[i] = max(highest[i], self.mixtures[i].score)
                    passed = [
                        (i, m.score)
                        for i, m in sorted(self.mixtures.items())
                        if m in candidates and m.score > self.expansion_threshold
                    ]
                    if passed:
                        found = passed[0]
                        break
        finally:
            net.train(was_training)
        layer, score = found
        self.decisions.append(
            {
                "task": task.index,
                "scan": sum(d["task"] == task.index for d in self.decisions),
                "expanded_layer": layer,
                "z": score if layer is not None else None,
                "highest_z": {str(i): round(z, 4) for i, z in highest.items()},
            }
        )
        return layer, score

    # -- inference and reporting ---------------------------------------------------------------
    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.net is not None and self.head is not None, "predict() called before learn()"
        model = nn.Sequential(self.net, self.head)
        return embed_samples(
            model,
            inputs,
            self.net.transform(train=False),
            self.ctx.device,
            self.ctx.batch_size,
            desc="sema predict",
        )

    def trainable_parameters(self) -> int:
        if self.net is None:
            return 0
        trained = sum(count_parameters(m, trainable_only=False) for m in self.mixtures.values())
        return trained + count_parameters(self.head, trainable_only=False)

    def extra_results(self) -> dict[str, Any]:
        expansions = [
            {"task": d["task"], "layer": d["expanded_layer"], "z": d["z"]}
            for d in self.decisions
            if d["expanded_layer"] is not None
        ]
        return {
            "expansions": expansions,
            "expansion_decisions": self.decisions,
            "adapters_per_layer": self.adapters_per_task,
            "expandable_layers": [i for i, m in self.mixtures.items() if m.expandable],
        }
