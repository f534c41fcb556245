"""Base classes of learners whose state is a function of embeddings and labels.

``FeatureLearner``: embed (the frozen backbone through the feature cache by
default; adapting methods such as APER and FSA embed with their adapted copy),
absorb each task's embeddings, score test embeddings. ``PrototypeLearner``:
class-mean prototypes from running statistics. Training-free methods
(SimpleCIL, NCM, kNN, LDA) and first-session methods (APER, FSA) build on them.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from clbench.data import Inputs, Samples
from clbench.kernels import ClassStats, class_stats, prototype_scores
from clbench.learner import Learner
from clbench.scenario import TrainTask


class FeatureLearner(Learner):
    """A learner whose whole state is a function of (embeddings, labels).

    Subclasses say how to embed (``embed``, the frozen backbone by default), how
    to absorb a task's embeddings (``absorb``) and how to score (``score``).
    """

    def embed(self, samples: Samples | Inputs) -> torch.Tensor:
        return self.ctx.frozen_features(samples)

    def learn(self, task: TrainTask) -> None:
        self.absorb(self.embed(task.train), torch.from_numpy(task.train.labels), task.seen_classes)

    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        return self.score(self.embed(inputs))

    @abstractmethod
    def absorb(self, features: torch.Tensor, labels: torch.Tensor, seen_classes: int) -> None:
        """Fold one task's embeddings into the learner's state."""

    @abstractmethod
    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Scores (n, seen classes) of embeddings."""


class PrototypeLearner(FeatureLearner):
    """Class-mean prototypes from running statistics, scored by ``metric``."""

    metric = "cosine"

    def __init__(self) -> None:
        self.stats: ClassStats | None = None

    def absorb(self, features: torch.Tensor, labels: torch.Tensor, seen_classes: int) -> None:
        self.stats = class_stats(features, labels, seen_classes, stats=self.stats)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        assert self.stats is not None, "predict() called before learn()"
        return prototype_scores(features, self.stats.means.float(), self.metric)
