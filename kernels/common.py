"""What the torch and Triton paths share: the statistics record, input checks, the vote.

Both paths take the same arguments and must give the same answers, so
everything that is not the hot loop lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clbench.errors import ConfigError

PROTOTYPE_METRICS = ("cosine", "euclidean", "linear")
KNN_METRICS = ("cosine", "euclidean")
VOTES = ("majority", "distance")
# The Triton top-k keeps k candidates per query in registers, padded to a power
# of two; 64 is the largest that fits comfortably. The torch path enforces the
# same limit so a configuration never works on one device and fails on another.
MAX_K = 64
# F.normalize's epsilon: a zero vector normalises to zero, not NaN.
NORM_EPS = 1e-12
# Added to the nearest neighbour's class so that equal votes go to it.
TIE_BONUS = 1e-6


@dataclass
class ClassStats:
    """Running per-class statistics: counts, sums and (optionally) sum of outer products.

    ``outer`` is the total over all samples of x x^T (the LDA covariance needs
    the pooled scatter, not one per class). Everything is float64, so adding
    batch after batch equals one pass over all the data.
    """

    counts: torch.Tensor  # (C,) float64
    sums: torch.Tensor  # (C, D) float64
    outer: torch.Tensor | None = None  # (D, D) float64

    @property
    def means(self) -> torch.Tensor:
        """Class means, float64; a class with no samples has a zero mean."""
        return self.sums / self.counts.clamp_min(1).unsqueeze(1)

    @property
    def num_classes(self) -> int:
        return self.counts.shape[0]

    @property
    def total(self) -> int:
        return int(self.counts.sum().item())

    def grow(self, num_classes: int) -> ClassStats:
        """The same statistics padded with empty classes up to ``num_classes``."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return self
        return ClassStats(
            F.pad(self.counts, (0, extra)), F.pad(self.sums, (0, 0, 0, extra)), self.outer
        )

    def merge(self, other: ClassStats) -> ClassStats:
        """The statistics of both batches together (``other`` may have more classes)."""
        mine = self.grow(other.num_classes)
        other = other.grow(mine.num_classes)
        outer = None
        if other.outer is not None:
            outer = other.outer if mine.outer is None else mine.outer + other.outer
        return ClassStats(mine.counts + other.counts, mine.sums + other.sums, outer)


def check_features(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2:
        raise ConfigError(f"{name} must be a 2-D (rows, dims) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError(f"{name} must be floating point (fp32, fp16 or bf16), got {x.dtype}")


def check_same_dims(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"{names} have different feature sizes ({a.shape[1]} vs {b.shape[1]})",
            "embed both with the same backbone",
        )


def check_labels(labels: torch.Tensor, rows: int, num_classes: int, what: str) -> torch.Tensor:
    """Labels as int64 on their device, with a clear error when out of range."""
    if labels.dim() != 1 or labels.shape[0] != rows:
        raise ConfigError(
            f"{what} labels must be a 1-D tensor of {rows} entries, got {tuple(labels.shape)}"
        )
    labels = labels.long()
    if rows and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigError(
            f"{what} labels span {int(labels.min())}..{int(labels.max())}, outside 0..{num_classes - 1}",
            "pass num_classes larger than the largest label",
        )
    return labels


def check_stats_inputs(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, stats: ClassStats | None
) -> torch.Tensor:
    check_features(features, "features")
    labels = check_labels(labels.to(features.device), features.shape[0], num_classes, "feature")
    if stats is not None and stats.sums.shape[1] != features.shape[1]:
        raise ConfigError(
            f"features have {features.shape[1]} dims but the existing statistics have {stats.sums.shape[1]}"
        )
    return labels


def check_prototype_inputs(
    queries: torch.Tensor, prototypes: torch.Tensor, metric: str, bias: torch.Tensor | None
) -> None:
    check_features(queries, "queries")
    check_features(prototypes, "prototypes")
    check_same_dims(queries, prototypes, "queries and prototypes")
    if metric not in PROTOTYPE_METRICS:
        raise ConfigError(
            f"unknown metric {metric!r}", f"use one of {', '.join(PROTOTYPE_METRICS)}"
        )
    if bias is not None and bias.shape != (prototypes.shape[0],):
        raise ConfigError(
            f"bias must have one entry per prototype ({prototypes.shape[0]}), got {tuple(bias.shape)}"
        )


def check_knn_inputs(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    metric: str,
    bank_norms: torch.Tensor | None = None,
) -> int:
    """Validates a kNN call; returns the number of neighbours actually found."""
    if bank_norms is not None and bank_norms.shape != (bank.shape[0],):
        raise ConfigError(
            f"bank_norms must have one entry per bank row ({bank.shape[0]}), got {tuple(bank_norms.shape)}",
            "pass clbench.kernels.row_norms(bank)",
        )
    check_features(queries, "queries")
    check_features(bank, "bank")
    check_same_dims(queries, bank, "queries and bank")
    if metric not in KNN_METRICS:
        raise ConfigError(f"unknown kNN metric {metric!r}", f"use one of {', '.join(KNN_METRICS)}")
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"k={k} is out of range", f"use 1 <= k <= {MAX_K}")
    if bank.shape[0] == 0:
        raise ConfigError(
            "the kNN memory bank is empty", "learn at least one task before predicting"
        )
    return min(k, bank.shape[0])


def class_votes(
    values: torch.Tensor,
    indices: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    metric: str,
    how: str,
) -> torch.Tensor:
    """Class votes (n, num_classes) from the neighbours found, nearest first.

    ``values`` are similarities (cosine) or negative squared distances
    (euclidean). ``distance`` voting weights a neighbour by its similarity
    (cosine, clamped at 0) or 1 / (1 + distance) (euclidean).
    """
    if how not in VOTES:
        raise ConfigError(f"unknown vote {how!r}", f"use one of {', '.join(VOTES)}")
    labels = bank_labels.to(indices.device, torch.long)[indices]
    if how == "majority":
        weights = torch.ones_like(values)
    elif metric == "cosine":
        weights = values.clamp_min(0)
    else:
        weights = 1.0 / (1.0 + (-values).clamp_min(0).sqrt())
    scores = torch.zeros(values.shape[0], num_classes, device=values.device)
    scores.scatter_add_(1, labels, weights)
    scores.scatter_add_(1, labels[:, :1], torch.full_like(values[:, :1], TIE_BONUS))
    return scores
