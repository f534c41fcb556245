"""What L2P, DualPrompt and CODA-Prompt share: a frozen ViT, prompts chosen per image, a growing head.

The prompts of an image depend on its query, the frozen pretrained ViT's
feature; it is served from the feature cache (``ctx.frozen_features``), so the
query costs no forward pass after the first run (PILOT recomputes it on each
augmented view; here the query of a training image is that of its test-time
view). A subclass attaches its prompt modules to the network copy (``build``)
and says how a batch is embedded (``embed_batch``: features and an auxiliary
loss). The loss is the cross-entropy over the current task's classes (old
logits masked, the ``train_mask`` of L2P and DualPrompt) plus that term.

Training options are the nested ``train`` (``--set train.lr=...``); each
method's ``default_train`` is its PILOT ImageNet-R configuration: Adam (betas
0.9, 0.999), no weight decay, a new optimiser per task, and the method's rate,
batch size, epochs and schedule. ``head_init="trunc-normal"`` starts the head's
rows as PILOT's timm ViT head does (std 0.02, bias 0; the default is ``nn.Linear``'s).
``query_view="train"`` computes a training image's query on its augmented view
with the frozen network, as PILOT and the authors' code do (one more forward pass
per step, no cache); test queries come from the cache either way.

Methods that pick discrete prompts by key-query match (L2P, DualPrompt) set
``last_selection`` in ``embed_batch``. The run's ``extra["prompt_selection"]``
then counts, per step and tested task, which prompts the test images chose, how
many of those no training batch ever chose (untrained keys and prompts) and, for
per-task prompts (DualPrompt), how many chose their own task's. Keys start
random and move slowly (Adam at lr 1e-3, a few hundredths per coordinate in a
few dozen steps), so on a short stream most images can pick a never-trained
prompt; the run then carries a warning, since its accuracy measures untrained
prompts.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from clbench.backbones import Backbone
from clbench.data import Inputs, Samples
from clbench.errors import ConfigError
from clbench.learner import Learner
from clbench.methods.heads import HeadInit, grow_linear
from clbench.methods.peft.common import count_parameters
from clbench.methods.vit_common import masked_cross_entropy, old_class_count, trainable_vit
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, resolve_train, to_device

QueryView = Literal["test", "train"]
"""Which view of a training image its query is computed on: the cached test view, or the
augmented view the prompted network sees (PILOT's, recomputed on every step)."""


class IndexedImages(Dataset):
    """(image tensor, row index) of samples: the index picks the row's cached query (and label)."""

    def __init__(self, samples: Samples | Inputs, transform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples.keys)

    def __getitem__(self, index: int):
        return self.transform(self.samples.loader(self.samples.keys[index])), index


class PromptLearner(Learner):
    """Frozen ViT + query-dependent prompts + linear head over all seen classes."""

    name = "prompt"

    def __init__(
        self,
        train: TrainConfig | dict | None = None,
        head_init: HeadInit = "default",
        query_view: QueryView = "test",
    ) -> None:
        self.train = resolve_train(self.default_train(), train)
        self.head_init = head_init
        self.query_view = query_view
        self.net: Backbone | None = None
        self.head: nn.Linear | None = None
        self.prompt_params: list[nn.Parameter] = []
        self.tasks_learned = 0
        self.last_selection: torch.Tensor | None = None  # (B, k) prompt indices, if discrete
        self.train_choices: torch.Tensor | None = None  # per prompt: training rows that chose it
        self.test_choices: torch.Tensor | None = None  # the last predict()'s selection
        self.selection_log: list[dict[str, Any]] = []
        self.train_logs: list[list[dict[str, Any]]] = []  # per task, fit's per-epoch records

    task_prompts = False
    """True where prompt ``t`` belongs to task ``t`` (DualPrompt's E-prompts)."""

    @staticmethod
    @abstractmethod
    def default_train() -> TrainConfig:
        """The method's training options (PILOT ImageNet-R)."""

    @abstractmethod
    def build(self, net: Backbone, query_dim: int) -> list[nn.Parameter]:
        """Attach the prompt modules to ``net`` (a frozen ViT copy); returns their parameters."""

    @abstractmethod
    def embed_batch(
        self, images: torch.Tensor, queries: torch.Tensor, task: int, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of a batch with its prompts, and the auxiliary loss (None at test time)."""

    def start_task(self, task: TrainTask) -> None:
        """Hook before a task's training (CODA initialises its new components here)."""

    def batches(self, samples: Samples | Inputs, train: bool, seed: int) -> DataLoader:
        dataset = IndexedImages(samples, self.net.transform(train=train))
        return DataLoader(
            dataset,
            batch_size=self.train.batch_size,
            shuffle=train,
            generator=torch.Generator().manual_seed(seed),
        )

    def learn(self, task: TrainTask) -> None:
        device = self.ctx.device
        # The augmented view's queries are computed per batch: the cached ones are not read.
        frozen = self.ctx.backbone.to(device).eval() if self.query_view == "train" else None
        queries = self.ctx.frozen_features(task.train) if frozen is None else None
        if self.net is None:
            self.net = trainable_vit(self.ctx, self.name)
            try:
                self.prompt_params = self.build(self.net, self.ctx.backbone_info.feature_dim)
            except ValueError as exc:  # e.g. a prompt layer this ViT does not have
                raise ConfigError(
                    f"{self.name}: {exc}",
                    "choose prompt layers and sizes that fit this ViT (see the method's options)",
                ) from exc
            self.net.to(device)
        self.head = grow_linear(
            self.head, self.net.feature_dim, task.seen_classes, self.head_init
        ).to(device)
        self.start_task(task)
        known = old_class_count(task.seen_classes, len(task.classes))
        labels = torch.from_numpy(task.train.labels)
        head = self.head

        def step(batch):
            images, index = batch
            targets = labels[index].to(device)
            images = to_device(images, device)
            if frozen is None:
                query = queries[index].to(device)
            else:
                with torch.no_grad():
                    query = frozen(images)
            features, aux = self.embed_batch(images, query, task.index, train=True)
            self.count_train_choices()
            logits = head(features).float()
            loss = masked_cross_entropy(logits, targets, known)
            return (loss if aux is None else loss + aux), logits, targets

        log = fit(
            list(self.prompt_params) + list(head.parameters()),
            self.batches(task.train, train=True, seed=self.ctx.seed + task.index),
            step,
            self.train,
            device,
            desc=f"{self.name} task {task.index}",
            modules=[self.net, head],
        )
        self.train_logs.append(log.to_dict())
        self.tasks_learned += 1

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.head is not None, "predict() called before learn()"
        device = self.ctx.device
        queries = self.ctx.frozen_features(inputs)
        self.net.eval()
        self.head.eval()
        scores, chosen = [], []
        for images, index in self.batches(inputs, train=False, seed=0):
            features, _ = self.embed_batch(
                to_device(images, device),
                queries[index].to(device),
                self.tasks_learned - 1,
                train=False,
            )
            scores.append(self.head(features).float().cpu())
            if self.last_selection is not None:
                chosen.append(self.last_selection.reshape(len(index), -1).cpu())
        self.test_choices = torch.cat(chosen) if chosen else None
        return torch.cat(scores)

    # -- prompt-selection diagnostics ---------------------------------------------------------
    def prompt_count(self) -> int:
        """Prompts a selection chooses from (the key pool of L2P and DualPrompt)."""
        return len(self.pool.keys)

    def count_train_choices(self) -> None:
        if self.last_selection is None:
            return
        counts = torch.bincount(self.last_selection.flatten().cpu(), minlength=self.prompt_count())
        self.train_choices = counts if self.train_choices is None else self.train_choices + counts

    def on_tested(self, step: int, task_index: int, samples: Samples, outputs: Any) -> None:
        """Log which prompts the tested task's images chose (the truth is its task index)."""
        if self.test_choices is None:
            return
        chosen, self.test_choices = self.test_choices, None
        trained = self.train_choices  # one count per prompt (bincount's minlength)
        if trained is None:
            trained = torch.zeros(self.prompt_count(), dtype=torch.long)
        record = {
            "after_task": step,
            "task": task_index,
            "samples": len(chosen),
            "chosen": torch.bincount(chosen.flatten(), minlength=len(trained)).tolist(),
            "untrained": int((trained[chosen] == 0).all(dim=1).sum()),
        }
        if self.task_prompts:
            record["own_prompt"] = int((chosen == task_index).any(dim=1).sum())
        self.selection_log.append(record)

    def selection_warnings(self) -> list[str]:
        """A warning when, after the last task, most test images chose only untrained prompts."""
        last = [r for r in self.selection_log if r["after_task"] == self.tasks_learned - 1]
        samples = sum(r["samples"] for r in last)
        untrained = sum(r["untrained"] for r in last)
        if not samples or untrained * 2 <= samples:
            return []
        return [
            f"{self.name}: after the last task {untrained} of {samples} test images "
            f"({100 * untrained / samples:.0f}%) chose only prompts that no training batch "
            "chose: the keys did not learn to route them, so the accuracy measures untrained "
            "prompts (more training steps per task move the keys further; see "
            "extra.prompt_selection)"
        ]

    def extra_results(self) -> dict[str, Any]:
        out: dict[str, Any] = {"train_logs": self.train_logs}
        if self.selection_log:
            out.update(prompt_selection=self.selection_log, warnings=self.selection_warnings())
        return out

    def trainable_parameters(self) -> int:
        if self.head is None:
            return 0
        return sum(p.numel() for p in self.prompt_params) + count_parameters(
            self.head, trainable_only=False
        )
