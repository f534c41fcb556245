"""The learner contract every method implements (scikit-learn style).

Hyper-parameters are plain constructor arguments with defaults, so a method is
configured the same way from the CLI (``--set k=5``), a config file or Python;
training options are one nested ``TrainConfig`` (argument ``train``, set as
``--set train.lr=0.01``). The Evaluator calls ``setup`` once, then ``learn`` for
each task and ``predict`` on test inputs; a learner never sees future tasks, never
sees test data while learning, and never receives test targets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:
    from clbench.context import RunContext
    from clbench.data import Inputs, Samples
    from clbench.scenario import TrainTask

#: Every image protocol: with the evaluator's task-IL masking, any image learner serves all.
IMAGE_PROTOCOLS = frozenset({"class-incremental", "domain-incremental", "task-incremental"})


class Learner(ABC):
    """Base class of every method.

    Subclasses implement ``learn`` and ``predict`` and declare what they serve:
    ``protocols`` (``Scenario.setting`` values) and ``modalities`` ("image",
    "text"). ``uses_task_id``: ``predict`` receives the task id in task-incremental
    scenarios (otherwise the evaluator restricts scores to the tested task's
    classes itself); ``needs_task_id``: the method cannot predict without it.
    Methods with trainable state report ``trainable_parameters`` and, when they keep
    state outside ordinary attributes, override ``state_dict``/``load_state_dict``
    (per-task checkpoints and ``--resume``).
    """

    ctx: RunContext
    protocols: ClassVar[frozenset[str]] = IMAGE_PROTOCOLS
    modalities: ClassVar[frozenset[str]] = frozenset({"image"})
    uses_task_id: ClassVar[bool] = False
    needs_task_id: ClassVar[bool] = False
    #: Whether per-task checkpoints can hold its state (``--resume`` continues after the
    #: last task); a learner whose state the safe checkpoint loader cannot admit restarts.
    checkpointable: ClassVar[bool] = True
    #: Its predictions never change with learning (``zeroshot``): the evaluator tests
    #: each test set once and reuses the outputs at every later step.
    static: ClassVar[bool] = False

    def setup(self, ctx: RunContext) -> None:
        """Receive the run's shared resources (backbone, feature cache, device)."""
        self.ctx = ctx

    @abstractmethod
    def learn(self, task: TrainTask) -> None:
        """Update on one task's training data."""

    @abstractmethod
    def predict(self, inputs: Inputs, task_id: int | None = None) -> Any:
        """Outputs for test inputs, of the kind ``inputs.output`` names: a (n, seen
        classes) score tensor whose argmax is the prediction, one score per answer
        choice, or generated text. ``task_id`` only for ``uses_task_id`` learners in
        task-incremental scenarios."""

    def on_tested(self, step: int, task_index: int, samples: Samples, outputs: Any) -> None:
        """Called by the evaluator after ``predict``, with the truth, for diagnostics only
        (e.g. how often MOS retrieved the sample's own task's adapter). Does nothing by default."""
        return None

    def trainable_parameters(self) -> int:
        """Parameters trained so far (0 for training-free methods)."""
        return 0

    def extra_results(self) -> dict[str, Any]:
        """Method-specific measurements to store in the RunResult (e.g. expansions)."""
        return {}

    # Checkpointing: by default every attribute except the run context is saved.
    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "ctx"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments and the values in force (a nested TrainConfig as a dict)."""
        names = list(inspect.signature(type(self)).parameters)
        values = {n: getattr(self, n) for n in names if hasattr(self, n)}
        return {
            n: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for n, v in values.items()
        }


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a run on CPU repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Python's, numpy's and torch's generators leave the block where they entered it:
    for work a run may or may not do (extracting a feature the cache lacks, building a
    network lazily), which must not change the random draws of what follows."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
