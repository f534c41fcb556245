"""CoDyRA (dynamic rank-selective LoRA) and sequential LoRA, on a ViT or on CLIP.

``dynrank``: each task attaches a fresh rank-gated LoRA (``methods/peft/dynrank``)
to the network's attention and MLP projections, trains it for a fixed number of
iterations with AdamW and a cosine schedule, soft-thresholds the gates after
every step of the second half of the task, then drops the zero-gate ranks and
merges the rest into the weights: the next task starts from the merged network
and inference costs what the pretrained network costs. ``lora``: the same with
plain LoRA (gates fixed at one, nothing pruned), the reference's comparison.

The gates move by the paper's proximal step (``gate_rule=paper``); its code
also zeroes every gate left below kappa after the step, i.e. all below 2 kappa
(``gate_rule=reference`` reproduces that, see ``reference_threshold_``).

The loss is the reference's: cosine logits ``scale * <image, class embedding>``
with cross-entropy over the seen and current classes, old ones masked, plus the
class-to-image cross-entropy (each class row's softmax over the batch's images).
The class embeddings depend on the backbone:

* open_clip (``--backbone openclip:...``): text embeddings of the prompt
  ``template.format(class name)``, by default (``template=dataset``) each dataset's
  own prompt where the scenario fixes one (MTIL's, as CoDyRA's code uses); the text tower carries LoRA too, so current
  classes' embeddings are recomputed every step and earlier classes' once per
  task; at test time class-name prompts give zero-shot scores on any task, also
  ones not yet learned.
* a vision-only ViT (DINOv2): a cosine head whose rows are initialised, when a
  class first appears, to its class-mean embedding under the current network
  (SimpleCIL's classifier) and then trained with the LoRA. CLIP's text
  embeddings are a ready classifier at step 0; the class mean is the ViT's
  closest equivalent, where a fresh linear head would need many more than the
  reference's iterations before its gradients carry information to the LoRA.
  Old classes' rows receive no gradient (they are masked), so what they forget
  is the backbone's drift: what rank selection is meant to limit.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clbench.backbones import Backbone
from clbench.backbones.openclip import DEFAULT_TEMPLATE, OpenClipBackbone
from clbench.data import Inputs
from clbench.errors import ConfigError
from clbench.features import embed_samples
from clbench.kernels import class_stats
from clbench.learner import IMAGE_PROTOCOLS, Learner
from clbench.methods.peft.common import count_parameters, freeze
from clbench.methods.peft.dynrank import (
    CLIP_TARGETS,
    GATE_RULES,
    TIMM_TARGETS,
    GateThreshold,
    active_ranks,
    attach_dynrank,
    gates,
    merge_dynrank,
)
from clbench.methods.vit_common import masked_cross_entropy, old_class_count
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, image_batches, resolve_train, to_device


def class_to_image_loss(logits_per_class: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference's text-to-image term: for each class row, cross-entropy of its
    softmax over the batch's images against the indicator of that class's images
    (rows of classes absent from the batch have a zero target and add nothing)."""
    target = F.one_hot(labels, logits_per_class.shape[0]).T.to(logits_per_class.dtype)
    return F.cross_entropy(logits_per_class, target)


def codyra_loss(
    images: torch.Tensor, classes: torch.Tensor, labels: torch.Tensor, known: int, scale
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-to-class (old classes masked) plus class-to-image cross-entropy; returns
    (loss, image logits). ``images`` and ``classes`` are L2-normalised embeddings."""
    logits = scale * images @ classes.T
    loss = masked_cross_entropy(logits, labels, known) + class_to_image_loss(logits.T, labels)
    return loss, logits


class RankLoRA(Learner):
    """A copy of the PTM that gets a fresh (gated or plain) LoRA for every task."""

    protocols: ClassVar[frozenset[str]] = IMAGE_PROTOCOLS
    gated: ClassVar[bool] = True

    def __init__(
        self,
        rank: int = 16,
        max_kappa: float = 0.005,
        dense_fraction: float = 0.5,
        kappa_levels: int = 50,
        scale: float = 100.0,
        template: str = "dataset",
        gate_rule: str = "paper",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if rank <= 0:
            raise ConfigError(f"rank must be positive, got {rank}", "the reference uses rank=16")
        if not 0.0 <= dense_fraction < 1.0:
            raise ConfigError(
                f"dense_fraction must be in [0, 1), got {dense_fraction}",
                "the reference thresholds from half-way: dense_fraction=0.5",
            )
        if gate_rule not in GATE_RULES:
            raise ConfigError(
                f"unknown gate_rule {gate_rule!r}",
                "use paper (the proximal step) or reference (what CoDyRA's code computes)",
            )
        if template != "dataset" and "{}" not in template:
            raise ConfigError(
                f"template {template!r} has no '{{}}' for the class name",
                "use template=dataset (each dataset's own prompt) or e.g. 'a photo of a {}.'",
            )
        self.gate_rule = gate_rule
        self.rank = rank
        self.max_kappa = max_kappa
        self.dense_fraction = dense_fraction
        self.kappa_levels = kappa_levels
        self.scale = scale
        self.template = template
        self.train = resolve_train(self.default_train(), train)
        self.net: Backbone | None = None
        self.head: nn.Parameter | None = None  # ViT only: (classes, dim) cosine head
        # CLIP only: the text prompt of every seen class, by label ("a photo of a {name}.").
        self.class_prompts: list[str] = []
        self.ranks: list[dict[str, list[int]]] = []
        self.lora_parameters: list[int] = []
        self.logs: list[list[dict]] = []

    @staticmethod
    def default_train() -> TrainConfig:
        # CoDyRA's runner: AdamW (0.9, 0.9999), lr 5e-4, no weight decay, cosine, 500
        # iterations, batch 64; its warm-up length defaults to 0 and the runner keeps it.
        return TrainConfig(
            optimizer="adamw",
            lr=5e-4,
            betas=(0.9, 0.9999),
            weight_decay=0.0,
            schedule="cosine",
            warmup_steps=0,
            batch_size=64,
            max_steps=500,
        )

    @property
    def clip(self) -> bool:
        return isinstance(self.net, OpenClipBackbone)

    def _network(self) -> Backbone:
        if self.net is None:
            self.net = freeze(self.ctx.new_backbone())
        return self.net

    # -- class embeddings ------------------------------------------------------------
    def _prompts(self, names: Sequence[str], dataset_template: str | None) -> list[str]:
        """``template=dataset``: the dataset's own prompt where its scenario fixes one
        (MTIL: CoDyRA's ``template[0]``), else the generic one; otherwise ``template``."""
        if self.template == "dataset":
            template = dataset_template or DEFAULT_TEMPLATE
        else:
            template = self.template
        return [template.format(name) for name in names]

    def _text(self, prompts: list[str], net: Backbone | None = None) -> torch.Tensor:
        net = net or self.net
        assert isinstance(net, OpenClipBackbone)
        return net.prompt_embeddings(prompts)

    def _remember_names(self, task: TrainTask) -> None:
        prompts = self.class_prompts + [""] * (task.seen_classes - len(self.class_prompts))
        new = self._prompts(task.class_names, task.prompt_template)
        for c, prompt in zip(task.classes, new, strict=True):
            prompts[int(c)] = prompt
        self.class_prompts = prompts

    @torch.no_grad()
    def _grow_head(self, task: TrainTask) -> None:
        """ViT: new classes' rows start at their class means under the current network."""
        net = self._network()
        old = 0 if self.head is None else self.head.shape[0]
        if task.seen_classes <= old:
            return
        features = embed_samples(
            net, task.train, net.transform(False), self.ctx.device, self.ctx.batch_size
        )
        stats = class_stats(features, torch.from_numpy(task.train.labels), task.seen_classes)
        means = F.normalize(stats.means.float(), dim=-1)
        rows = (
            torch.cat([self.head.detach().cpu(), means[old:]]) if self.head is not None else means
        )
        self.head = nn.Parameter(rows.to(self.ctx.device))

    # -- learning --------------------------------------------------------------------
    def learn(self, task: TrainTask) -> None:
        net = self._network()
        targets = CLIP_TARGETS if self.clip else TIMM_TARGETS
        model = net.model
        attach_dynrank(model, self.rank, targets, gated=self.gated)
        self.lora_parameters.append(count_parameters(model))
        known = old_class_count(task.seen_classes, len(task.classes))
        if self.clip:
            self._remember_names(task)
            step = self._clip_step(task, known)
            params = list(model.parameters())
        else:
            self._grow_head(task)
            step = self._vit_step(known)
            params = [*model.parameters(), self.head]
        batches = image_batches(
            task.train, net.transform(train=True), self.train.batch_size, self.ctx.seed + task.index
        )
        total = self.train.max_steps or self.train.epochs * len(batches)
        hook = (
            GateThreshold(
                gates(model),
                total,
                self.max_kappa,
                self.dense_fraction,
                self.kappa_levels,
                self.gate_rule,
            )
            if self.gated
            else None
        )
        log = fit(
            params,
            batches,
            step,
            self.train,
            self.ctx.device,
            desc=f"{'dynrank' if self.gated else 'lora'} task {task.index}",
            after_step=hook,
            modules=[model],
        )
        self.logs.append(log.to_dict())
        self.ranks.append(merge_dynrank(model))
        model.eval()

    def _vit_step(self, known: int):
        net, device = self.net, self.ctx.device

        def step(batch):
            images, labels = batch
            labels = labels.to(device)
            feats = F.normalize(net(to_device(images, device)).float(), dim=-1)
            loss, logits = codyra_loss(
                feats, F.normalize(self.head, dim=-1), labels, known, self.scale
            )
            return loss, logits, labels

        return step

    def _clip_step(self, task: TrainTask, known: int):
        net, device = self.net, self.ctx.device
        assert isinstance(net, OpenClipBackbone)
        with torch.no_grad():  # earlier classes: fixed for the task, as in the reference
            old = self._text(self.class_prompts[:known]) if known else None
        current = self.class_prompts[known : task.seen_classes]

        def step(batch):
            images, labels = batch
            labels = labels.to(device)
            text = self._text(current)
            classes = text if old is None else torch.cat([old, text])
            feats = F.normalize(net(to_device(images, device)).float(), dim=-1)
            loss, logits = codyra_loss(feats, classes, labels, known, net.logit_scale())
            return loss, logits, labels

        return step

    # -- prediction ------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        net = self.net if self.net is not None else self.ctx.backbone  # zero-shot before task 0
        feats = embed_samples(
            net, inputs, net.transform(False), self.ctx.device, self.ctx.batch_size, "predict"
        )
        feats = F.normalize(feats, dim=-1)
        if not isinstance(net, OpenClipBackbone):
            assert self.head is not None, "predict() called before learn()"
            return self.scale * feats @ F.normalize(self.head.detach().cpu(), dim=-1).T
        scale = float(net.logit_scale())
        if inputs.class_names:
            # Task-incremental (MTIL): the tested task's own label space, by name.
            classes = np.asarray(inputs.classes, dtype=np.int64)
            prompts = self._prompts(inputs.class_names, inputs.prompt_template)
            text = self._text(prompts, net).cpu()
            scores = torch.full((len(inputs), int(classes.max()) + 1), float("-inf"))
            scores[:, torch.from_numpy(classes)] = scale * feats @ text.T
            return scores
        if not self.class_prompts:
            raise ConfigError(
                "CLIP without a task id scores the class names it has seen, and none yet",
                "test unseen tasks zero-shot in a task-incremental scenario (MTIL)",
            )
        return scale * feats @ self._text(self.class_prompts, net).cpu().T

    # -- reporting -------------------------------------------------------------------
    def trainable_parameters(self) -> int:
        """LoRA (and gate) parameters trained on the last task, plus the ViT head."""
        head = 0 if self.head is None else self.head.numel()
        return (self.lora_parameters[-1] if self.lora_parameters else 0) + head

    def state_bytes(self) -> int:
        """Size of the learner's saved state: the merged network and the head."""
        buffer = io.BytesIO()
        torch.save(
            {"net": None if self.net is None else self.net.state_dict(), "head": self.head}, buffer
        )
        return buffer.tell()

    def extra_results(self) -> dict:
        return {
            "gate_rule": self.gate_rule,
            "ranks_kept": self.ranks,
            "lora_parameters_per_task": self.lora_parameters,
            "state_bytes": self.state_bytes(),
            "train_logs": self.logs,
        }

    def current_ranks(self) -> dict[str, list[int]]:
        return {} if self.net is None else active_ranks(self.net.model)


@register_method("dynrank")
class DynRank(RankLoRA):
    """CoDyRA: rank-gated LoRA per task, gates soft-thresholded, merged after each task."""

    gated = True


@register_method("lora")
class SequentialLoRA(RankLoRA):
    """Sequential LoRA: a fresh plain LoRA per task, merged after it (no gates, no pruning)."""

    gated = False
