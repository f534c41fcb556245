"""The learner contract every method implements (scikit-learn style).

Hyper-parameters are plain constructor arguments with defaults, so a method is
configured the same way from the CLI (``--set lr=0.01``), a config file or Python.
The Evaluator calls ``setup`` once, then ``learn`` for each task and ``predict``
on test data; a learner never sees future tasks nor test data while learning.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from clbench.context import RunContext
    from clbench.data import Samples
    from clbench.scenario import TrainTask


class Learner(ABC):
    """Base class of every method.

    Subclasses implement ``learn`` and ``predict``; methods with trainable state
    also report ``trainable_parameters`` and, when they keep state outside
    ordinary attributes, override ``state_dict``/``load_state_dict`` (used for
    per-task checkpoints and ``--resume``).
    """

    ctx: RunContext
    #: Whether predictions need the task id at test time (task-incremental methods).
    needs_task_id: bool = False

    def setup(self, ctx: RunContext) -> None:
        """Receive the run's shared resources (backbone, feature cache, device)."""
        self.ctx = ctx

    @abstractmethod
    def learn(self, task: TrainTask) -> None:
        """Update on one task's training data."""

    @abstractmethod
    def predict(self, samples: Samples, task_id: int | None = None) -> torch.Tensor:
        """Scores of shape (len(samples), seen classes); argmax is the prediction."""

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
        """Constructor arguments and their values, for the run's configuration."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}


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
