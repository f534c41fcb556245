"""The classic baselines through Avalanche: every strategy below is an ``avalanche:NAME`` method.

One adapter serves them all. A clbench task becomes an Avalanche experience
(``current_experience`` = the task index, a classification dataset of the
task's training data); the strategy trains on it with Avalanche's own loop and
plugins (the exception to "every method trains through clbench.training.fit":
reusing Avalanche's implementations is the point); ``predict`` runs the
strategy's model on the test inputs. Two modes:

- frozen features (default): PTM embeddings from the feature cache and a
  trainable linear head; the ordinary way to give a PTM baseline the classic
  methods' protection, seconds per run when the features are cached.
- ``train_backbone=true``: the whole network is trained (a copy of the PTM plus
  head).

The head is Avalanche's ``IncrementalClassifier``, grown to the classes seen so
far before each task; DER stores old logits and needs a fixed width
(``head_width``, sliced to the seen classes at test time).

Live cross-check: after every test the evaluator hands the truth to
``on_tested``; the adapter then runs Avalanche's own evaluation (accuracy per
experience, experience forgetting) on the same test data and compares it with
the accuracy of the predictions clbench scored (before any task-IL restriction)
and the forgetting they imply. A mismatch stops the run naming the cell; the
agreement is stored in the RunResult (``extra.avalanche_crosscheck``).

Strategy defaults are Avalanche's where it has them; where a hyper-parameter
has no default there (EWC's lambda, LwF's alpha and temperature, SI's lambda,
A-GEM/GEM's patterns per experience), the value below is clbench's choice, not
tuned on any test set.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from clbench.data import Inputs, Samples
from clbench.errors import ClbenchError, ConfigError
from clbench.features import ImageDataset, embed_samples
from clbench.learner import Learner
from clbench.methods.peft import count_parameters
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, make_optimizer, resolve_train

#: Avalanche and clbench count the same predictions: they must agree to rounding.
CROSSCHECK_TOLERANCE = 1e-9
#: Constructor arguments of every Avalanche strategy that the adapter supplies itself.
SUPPLIED = {
    "self", "model", "optimizer", "criterion", "train_mb_size", "train_epochs",
    "eval_mb_size", "device", "plugins", "evaluator", "eval_every", "base_kwargs", "kwargs",
}  # fmt: skip


@dataclass(frozen=True)
class Strategy:
    cls_name: str
    defaults: dict[str, Any]
    """Values for the strategy's hyper-parameters that have no default in Avalanche."""
    description: str
    fixed_head: bool = False
    memory: str | None = None
    """The hyper-parameter that sizes the strategy's replay memory, if it has one."""


STRATEGIES: dict[str, Strategy] = {
    "naive": Strategy("Naive", {}, "Avalanche Naive: fine-tuning task after task, no protection"),
    "ewc": Strategy("EWC", {"ewc_lambda": 100.0}, "Avalanche EWC: Fisher-weighted penalty"),
    "lwf": Strategy(
        "LwF", {"alpha": 1.0, "temperature": 2.0}, "Avalanche LwF: distillation on old outputs"
    ),
    "si": Strategy(
        "SynapticIntelligence", {"si_lambda": 1.0}, "Avalanche SI: path-integral importance"
    ),
    "replay": Strategy(
        "Replay", {}, "Avalanche experience replay (class-balanced buffer)", memory="mem_size"
    ),
    "gdumb": Strategy(
        "GDumb", {}, "Avalanche GDumb: retrain from scratch on a greedy buffer", memory="mem_size"
    ),
    "der": Strategy(
        "DER",
        {},
        "Avalanche DER: replay of logits and labels (fixed-width head)",
        fixed_head=True,
        memory="mem_size",
    ),
    "agem": Strategy(
        "AGEM",
        {"patterns_per_exp": 50},
        "Avalanche A-GEM: projected gradients on a memory",
        memory="patterns_per_exp",
    ),
    "gem": Strategy(
        "GEM",
        {"patterns_per_exp": 50},
        "Avalanche GEM: quadratic-program projection (needs quadprog)",
        memory="patterns_per_exp",
    ),
}


def strategy_class(name: str) -> type:
    import avalanche.training.supervised as supervised

    return getattr(supervised, STRATEGIES[name].cls_name)


def strategy_parameters(name: str) -> list[inspect.Parameter]:
    """The strategy's own hyper-parameters, with clbench's values where Avalanche has none."""
    spec, out = STRATEGIES[name], []
    for p in inspect.signature(strategy_class(name).__init__).parameters.values():
        if p.name in SUPPLIED or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = spec.defaults.get(p.name, p.default)
        if default is inspect.Parameter.empty:
            raise RuntimeError(f"avalanche:{name}: give {p.name} a default in STRATEGIES")
        out.append(p.replace(kind=p.KEYWORD_ONLY, default=default, annotation=p.annotation))
    return out


class _Labelled(Dataset):
    """A dataset with the ``targets`` list Avalanche's classification datasets require."""

    def __init__(self, base: Dataset, targets: np.ndarray) -> None:
        self.base, self.targets = base, [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        return self.base[index]


def experience(dataset: Dataset, labels: np.ndarray, index: int, classes: list[int], stream: str):
    """An Avalanche experience numbered ``index`` (its metrics are keyed by that number)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
    from avalanche.benchmarks.scenarios.generic_scenario import EagerCLStream
    from avalanche.benchmarks.utils.classification_dataset import (
        _make_taskaware_classification_dataset,
    )

    data = _make_taskaware_classification_dataset(_Labelled(dataset, labels), task_labels=0)
    exp = DatasetExperience(dataset=data, current_experience=index)
    exp.classes_in_this_experience = classes  # read by IncrementalClassifier.adaptation
    exp.origin_stream = EagerCLStream(stream, [exp], set_stream_info=False)
    return exp


class AvalancheLearner(Learner):
    """A clbench learner driving one Avalanche strategy (see the module docstring)."""

    strategy_name: ClassVar[str]
    # Strategies keep Avalanche datasets, transforms and live iterators in their plugins,
    # which the safe checkpoint loader (clbench.checkpoint) does not unpickle: an
    # interrupted run of an Avalanche baseline starts over instead of resuming.
    checkpointable = False

    def __init__(self, **options: Any) -> None:
        signature = inspect.signature(type(self))
        bound = signature.bind(**options)
        bound.apply_defaults()
        values = dict(bound.arguments)
        self.train_backbone: bool = values.pop("train_backbone")
        self.head_width: int | None = values.pop("head_width")
        self.train = resolve_train(self.default_train(self.train_backbone), values.pop("train"))
        self.strategy_options = values
        for key, value in values.items():
            setattr(self, key, value)
        spec = STRATEGIES[self.strategy_name]
        if spec.fixed_head and not self.head_width:
            raise ConfigError(
                f"avalanche:{self.strategy_name} needs a fixed-width head",
                "--set head_width=N with N at least the number of classes",
            )
        self.strategy = None
        self.seen_classes = 0
        self.crosscheck: dict[tuple[int, int], dict[str, float]] = {}
        self.memory_sizes: list[int] = []
        self._last_outputs: torch.Tensor | None = None

    @staticmethod
    def default_train(train_backbone: bool) -> TrainConfig:
        # A linear head on frozen features takes a large step; a whole network a small one.
        if not train_backbone:
            return TrainConfig(epochs=10, lr=0.05, batch_size=32, schedule="constant")
        return TrainConfig(epochs=1, lr=0.01, batch_size=32, weight_decay=5e-4, schedule="constant")

    # -- construction -----------------------------------------------------------------------
    def _build(self, first: TrainTask) -> None:
        from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
        from avalanche.models import IncrementalClassifier
        from avalanche.training.plugins import EvaluationPlugin

        ctx = self.ctx
        body: nn.Module = ctx.new_backbone() if self.train_backbone else nn.Identity()
        width = self.head_width or first.seen_classes
        dim = ctx.backbone_info.feature_dim  # on frozen features, the network is never built
        head = (
            nn.Linear(dim, width)
            if self.head_width
            else IncrementalClassifier(dim, initial_out_features=width)
        )
        model = nn.Sequential(body, head).to(ctx.device)
        if self.train.schedule != "constant":
            raise ConfigError(
                "Avalanche strategies train with a constant learning rate here",
                "leave train.schedule at constant",
            )
        self.evaluation = EvaluationPlugin(
            accuracy_metrics(experience=True), forgetting_metrics(experience=True), loggers=[]
        )
        self.strategy = strategy_class(self.strategy_name)(
            model=model,
            optimizer=make_optimizer(model.parameters(), self.train),
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=self.train.batch_size,
            train_epochs=self.train.epochs,
            eval_mb_size=ctx.batch_size,
            device=ctx.device,
            evaluator=self.evaluation,
            **self.strategy_options,
        )

    def _dataset(self, samples: Samples | Inputs, train: bool) -> Dataset:
        if not self.train_backbone:
            features = self.ctx.frozen_features(samples)
            labels = torch.as_tensor(getattr(samples, "labels", np.zeros(len(samples))))
            return TensorDataset(features, labels.long())
        transform = self.ctx.backbone.transform(train=train)
        return ImageDataset(samples, transform)

    # -- the clbench verbs --------------------------------------------------------------------
    def learn(self, task: TrainTask) -> None:
        if self.strategy is None:
            self._build(task)
        if self.head_width is not None and task.seen_classes > self.head_width:
            raise ConfigError(
                f"head_width {self.head_width} < {task.seen_classes} classes seen",
                f"--set head_width={task.seen_classes} or more",
            )
        self.seen_classes = task.seen_classes
        # All seen classes, so a head reset by the strategy (GDumb) still covers them.
        classes = list(range(task.seen_classes))
        self.strategy.train(
            experience(
                self._dataset(task.train, True), task.train.labels, task.index, classes, "train"
            )
        )
        memory = self._memory_size()
        if memory is not None:
            self.memory_sizes.append(memory)

    @property
    def model(self) -> nn.Module:
        # The strategy's, not one kept here: GDumb replaces it with a fresh copy every task.
        return self.strategy.model

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        model = self.model.eval()
        if not self.train_backbone:
            logits = model(self.ctx.frozen_features(inputs).to(self.ctx.device)).cpu()
        else:
            logits = embed_samples(
                model,
                inputs,
                self.ctx.backbone.transform(train=False),
                self.ctx.device,
                self.ctx.batch_size,
                desc="avalanche predict",
            )
        scores = logits[:, : self.seen_classes]
        if scores.shape[1] < self.seen_classes:  # a head that has not grown yet (GDumb)
            pad = torch.full((len(scores), self.seen_classes - scores.shape[1]), float("-inf"))
            scores = torch.cat([scores, pad], dim=1)
        self._last_outputs = scores
        return scores

    def on_tested(self, step: int, task_index: int, samples: Samples, outputs: Any) -> None:
        """Avalanche's own accuracy and forgetting on this test set, against clbench's."""
        ours = float((self._last_outputs.argmax(1).numpy() == samples.labels).mean())
        # The seen classes, not the test labels': evaluation must not grow the head.
        classes = list(range(self.seen_classes))
        exp = experience(self._dataset(samples, False), samples.labels, task_index, classes, "test")
        metrics = self.strategy.eval([exp])
        theirs = metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Exp{task_index:03d}"]
        cell = {"clbench": ours, "avalanche": float(theirs)}
        forgetting_key = f"ExperienceForgetting/eval_phase/test_stream/Exp{task_index:03d}"
        if forgetting_key in metrics and (task_index, task_index) in self.crosscheck:
            first = self.crosscheck[(task_index, task_index)]["clbench"]
            cell["forgetting_clbench"] = first - ours
            cell["forgetting_avalanche"] = float(metrics[forgetting_key])
        self.crosscheck[(step, task_index)] = cell
        for kind in ("", "forgetting_"):
            a, b = cell.get(f"{kind}clbench"), cell.get(f"{kind}avalanche")
            if a is not None and abs(a - b) > CROSSCHECK_TOLERANCE:
                raise ClbenchError(
                    f"Avalanche and clbench disagree on the {kind or 'accuracy '}cell "
                    f"(after task {step}, test task {task_index}): Avalanche {b:.6f}, "
                    f"clbench {a:.6f}",
                    "this is a bug in the Avalanche adapter: report it with the run's configuration",
                )

    # -- reporting --------------------------------------------------------------------------
    def _memory_size(self) -> int | None:
        for plugin in getattr(self.strategy, "plugins", []):
            policy = getattr(plugin, "storage_policy", None)
            if policy is not None:
                return len(policy.buffer)
        policy = getattr(self.strategy, "storage_policy", None)  # GDumb, DER keep it themselves
        return None if policy is None else len(policy.buffer)

    def trainable_parameters(self) -> int:
        return 0 if self.strategy is None else count_parameters(self.model)

    def extra_results(self) -> dict[str, Any]:
        cells = list(self.crosscheck.values())
        forgetting = [c for c in cells if "forgetting_clbench" in c]
        spec = STRATEGIES[self.strategy_name]
        accuracy_gap = max((abs(c["clbench"] - c["avalanche"]) for c in cells), default=0.0)
        forgetting_gap = max(
            (abs(c["forgetting_clbench"] - c["forgetting_avalanche"]) for c in forgetting),
            default=0.0,
        )
        return {
            "avalanche_strategy": spec.cls_name,
            "avalanche_crosscheck": {
                "cells_compared": len(cells),
                "max_accuracy_difference": accuracy_gap,
                "forgetting_compared": len(forgetting),
                "max_forgetting_difference": forgetting_gap,
                "agree": max(accuracy_gap, forgetting_gap) <= CROSSCHECK_TOLERANCE,
            },
            "memory": None
            if spec.memory is None
            else {
                "parameter": spec.memory,
                "size": getattr(self, spec.memory),
                "buffer_after_task": self.memory_sizes,
            },
        }


class _LazySignature(type(Learner)):
    """Gives each strategy's learner class its signature on first use: reading it imports
    Avalanche (4-7 s with torchmetrics), which the registry's import of this module must
    not cost a run that never uses an Avalanche method."""

    @property
    def __signature__(cls) -> inspect.Signature:
        if "_signature" not in cls.__dict__:
            spec = STRATEGIES[cls.strategy_name]
            defaults = {"head_width": 1000} if spec.fixed_head else {}
            own = [
                inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(n, d))
                for n, d in (("train_backbone", False), ("head_width", None), ("train", None))
            ]
            cls._signature = inspect.Signature(own + strategy_parameters(cls.strategy_name))
        return cls._signature


def _register(name: str) -> None:
    spec = STRATEGIES[name]
    if name == "gem" and importlib.util.find_spec("quadprog") is None:
        return  # Avalanche's GEM needs quadprog; `clbench list` shows only what can run
    cls = _LazySignature(
        f"Avalanche{spec.cls_name}",
        (AvalancheLearner,),
        {"strategy_name": name, "__doc__": f"{spec.description}.", "__module__": __name__},
    )
    register_method(f"avalanche:{name}", f"{spec.description}; frozen features or train_backbone")(
        cls
    )


for _name in STRATEGIES:
    _register(_name)
