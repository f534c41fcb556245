"""Training-free methods on frozen pretrained features: SimpleCIL, NCM and kNN.

They share one shape: embed each task's training images with the frozen
backbone (served by the feature cache), keep class statistics or a memory
bank, and score test embeddings with a fused kernel. A second run on the same
scenario costs no pass over the images.
"""

from __future__ import annotations

import torch

from clbench.kernels import knn_scores, row_norms
from clbench.methods.base import FeatureLearner, PrototypeLearner
from clbench.registry import register_method


@register_method("simplecil")
class SimpleCIL(PrototypeLearner):
    """Frozen PTM, cosine similarity to class-mean prototypes (Zhou et al. 2023)."""

    metric = "cosine"


@register_method("ncm")
class NCM(PrototypeLearner):
    """Nearest class mean by Euclidean distance on frozen features."""

    metric = "euclidean"


@register_method("knn")
class KNN(FeatureLearner):
    """k-nearest neighbours over a memory bank of all seen training embeddings."""

    def __init__(self, k: int = 10, metric: str = "cosine", vote: str = "distance") -> None:
        self.k = k
        self.metric = metric
        self.vote = vote
        self.bank: torch.Tensor | None = None
        self.bank_labels: torch.Tensor | None = None
        # Norms are computed once per absorbed row, not once per predict call.
        self.bank_norms: torch.Tensor | None = None
        self.num_classes = 0

    def absorb(self, features: torch.Tensor, labels: torch.Tensor, seen_classes: int) -> None:
        norms = row_norms(features)
        self.bank = features if self.bank is None else torch.cat([self.bank, features])
        self.bank_labels = (
            labels if self.bank_labels is None else torch.cat([self.bank_labels, labels])
        )
        self.bank_norms = norms if self.bank_norms is None else torch.cat([self.bank_norms, norms])
        self.num_classes = seen_classes

    def score(self, features: torch.Tensor) -> torch.Tensor:
        assert self.bank is not None, "predict() called before learn()"
        return knn_scores(
            features,
            self.bank,
            self.bank_labels,
            self.num_classes,
            k=self.k,
            metric=self.metric,
            vote=self.vote,
            bank_norms=self.bank_norms,
        )
