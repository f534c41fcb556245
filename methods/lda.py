"""Linear discriminant analysis heads from running statistics, and the frozen-feature LDA method.

The head needs only (count, sum) per class and the pooled sum of outer
products, which ``clbench.kernels.class_stats(..., outer=True)`` accumulates
task by task, so it is updated exactly without storing any feature:

    Sigma  = (1 - shrinkage) * C + shrinkage * I + ridge * I
    logits = f^T Sigma^-1 mu_c - 1/2 mu_c^T Sigma^-1 mu_c

with C the covariance of all features seen so far (``covariance="total"``, the
FSA reference: unbiased, N - 1) or the pooled within-class scatter over N
(``"within"``, streaming LDA of Hayes & Kanan / Avalanche). Sigma is solved by
Cholesky, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clbench.errors import ConfigError
from clbench.kernels import ClassStats, class_stats, prototype_scores
from clbench.methods.base import FeatureLearner
from clbench.registry import register_method

COVARIANCES = ("total", "within")


def covariance(stats: ClassStats, kind: str = "total") -> torch.Tensor:
    """The shared covariance implied by running statistics (float64)."""
    if stats.outer is None:
        raise ValueError("class statistics were accumulated without outer=True")
    n = stats.counts.sum()
    if kind == "total":
        total = stats.sums.sum(0)
        return (stats.outer - torch.outer(total, total) / n) / (n - 1).clamp_min(1)
    if kind == "within":
        seen = stats.counts > 0
        sums, counts = stats.sums[seen], stats.counts[seen]
        between = (sums / counts[:, None]).T @ sums  # sum_c n_c mu_c mu_c^T
        return (stats.outer - between) / n
    raise ConfigError(f"unknown covariance {kind!r}", f"use one of {', '.join(COVARIANCES)}")


@dataclass
class LDAHead:
    """Linear scores ``features @ weight.T + bias`` of an LDA classifier."""

    weight: torch.Tensor  # (C, D): Sigma^-1 mu_c per row
    bias: torch.Tensor  # (C,): -1/2 mu_c^T Sigma^-1 mu_c

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return prototype_scores(features, self.weight.float(), "linear", bias=self.bias.float())


def lda_head(
    stats: ClassStats, kind: str = "total", ridge: float = 1.0, shrinkage: float = 0.0
) -> LDAHead:
    """Solve the LDA head from running statistics with a Cholesky factorisation."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ConfigError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    sigma = covariance(stats, kind)
    eye = torch.eye(sigma.shape[0], dtype=sigma.dtype, device=sigma.device)
    sigma = (1 - shrinkage) * sigma + (shrinkage + ridge) * eye
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) != 0:
        raise ConfigError(
            "the LDA covariance is not positive definite",
            "set ridge > 0 or shrinkage > 0 (e.g. --set ridge=1.0)",
        )
    means = stats.means
    solved = torch.cholesky_solve(means.T, factor).T  # (C, D) = (Sigma^-1 mu_c)^T
    bias = -0.5 * (solved * means).sum(1)
    return LDAHead(solved, bias)


class LDALearner(FeatureLearner):
    """Class statistics plus the pooled outer-product sum; an LDA head solved when asked."""

    def __init__(
        self, covariance: str = "total", ridge: float = 1.0, shrinkage: float = 0.0
    ) -> None:
        if covariance not in COVARIANCES:
            raise ConfigError(
                f"unknown covariance {covariance!r}", f"use one of {', '.join(COVARIANCES)}"
            )
        if not 0.0 <= shrinkage <= 1.0 or ridge < 0:
            raise ConfigError(
                f"need 0 <= shrinkage <= 1 and ridge >= 0, got shrinkage={shrinkage}, ridge={ridge}"
            )
        self.covariance = covariance
        self.ridge = ridge
        self.shrinkage = shrinkage
        self.stats: ClassStats | None = None
        self._head: LDAHead | None = None

    def absorb(self, features: torch.Tensor, labels: torch.Tensor, seen_classes: int) -> None:
        # float64 in: the kernel keeps exact float64 statistics, because the covariance
        # solve amplifies fp32 rounding in the scatter (1e-5 heads need exact sums).
        self.stats = class_stats(
            features.double(), labels, seen_classes, outer=True, stats=self.stats
        )
        self._head = None  # solved again on the next predict

    def score(self, features: torch.Tensor) -> torch.Tensor:
        assert self.stats is not None, "predict() called before learn()"
        if self._head is None:
            self._head = lda_head(self.stats, self.covariance, self.ridge, self.shrinkage)
        return self._head.scores(features)


@register_method("lda")
class LDA(LDALearner):
    """Frozen PTM, LDA head updated exactly from running statistics (no stored features)."""
