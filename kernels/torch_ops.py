"""Torch implementations of the frozen-feature kernels (CPU path and reference)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ClassStats:
    """Running per-class statistics: counts, sums and (optionally) sum of outer products.

    ``outer`` is the total over all samples of x x^T (the LDA covariance needs
    the pooled scatter, not one per class).
    """

    counts: torch.Tensor  # (C,) float64
    sums: torch.Tensor  # (C, D) float64
    outer: torch.Tensor | None = None  # (D, D) float64

    @property
    def means(self) -> torch.Tensor:
        return self.sums / self.counts.clamp_min(1).unsqueeze(1)

    @property
    def num_classes(self) -> int:
        return self.counts.shape[0]

    def grow(self, num_classes: int) -> ClassStats:
        """The same statistics padded with empty classes up to ``num_classes``."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return self
        return ClassStats(
            F.pad(self.counts, (0, extra)), F.pad(self.sums, (0, 0, 0, extra)), self.outer
        )


def class_stats(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    normalize: bool = False,
    outer: bool = False,
    stats: ClassStats | None = None,
) -> ClassStats:
    """Accumulate per-class counts and sums (and the pooled outer-product sum).

    Accumulation is in float64 whatever the input dtype, so incremental updates
    equal one pass over all data. ``normalize`` L2-normalises each feature first.
    """
    x = features.to(torch.float64)
    if normalize:
        x = F.normalize(x, dim=1)
    labels = labels.to(x.device, torch.long)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=x.device)
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_add_(0, labels, x)
    scatter = x.T @ x if outer else None
    if stats is None:
        return ClassStats(counts, sums, scatter)
    stats = stats.grow(num_classes)
    total_outer = None
    if outer:
        total_outer = scatter if stats.outer is None else stats.outer + scatter
    return ClassStats(stats.counts + counts, stats.sums + sums, total_outer)


def prototype_scores(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores of each query against each prototype, float32 (higher is better).

    ``cosine``: cosine similarity. ``euclidean``: negative squared distance.
    ``linear``: ``queries @ prototypes.T + bias`` (the LDA head's form).
    """
    q = queries.float()
    p = prototypes.to(q.device, torch.float32)
    if metric == "cosine":
        return F.normalize(q, dim=1) @ F.normalize(p, dim=1).T
    if metric == "euclidean":
        return -(q.pow(2).sum(1, keepdim=True) - 2 * q @ p.T + p.pow(2).sum(1)[None, :])
    if metric == "linear":
        scores = q @ p.T
        return scores if bias is None else scores + bias.to(scores)[None, :]
    raise ValueError(f"unknown metric {metric!r}: use cosine, euclidean or linear")


def knn_scores(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 10,
    metric: str = "cosine",
    vote: str = "majority",
    chunk: int = 16384,
) -> torch.Tensor:
    """Class votes (n, num_classes) from the k nearest bank entries of each query.

    The bank is scanned in chunks with a running top-k, so memory stays
    O(n * (k + chunk)) whatever the bank size. ``distance`` voting weights each
    neighbour by its similarity (cosine) or 1 / (1 + distance) (euclidean).
    """
    q = queries.float()
    if metric == "cosine":
        q = F.normalize(q, dim=1)
    k = min(k, bank.shape[0])
    n = q.shape[0]
    best = torch.full((n, k), float("-inf"), device=q.device)
    best_idx = torch.zeros((n, k), dtype=torch.long, device=q.device)
    for start in range(0, bank.shape[0], chunk):
        b = bank[start : start + chunk].to(q.device, torch.float32)
        if metric == "cosine":
            sim = q @ F.normalize(b, dim=1).T
        elif metric == "euclidean":
            sim = -(q.pow(2).sum(1, keepdim=True) - 2 * q @ b.T + b.pow(2).sum(1)[None, :])
        else:
            raise ValueError(f"unknown metric {metric!r}: use cosine or euclidean")
        merged = torch.cat([best, sim], dim=1)
        merged_idx = torch.cat([best_idx, torch.arange(start, start + b.shape[0], device=q.device).expand(n, -1)], 1)
        best, pos = merged.topk(k, dim=1)
        best_idx = merged_idx.gather(1, pos)
    labels = bank_labels.to(q.device, torch.long)[best_idx]
    if vote == "majority":
        weights = torch.ones_like(best)
    elif vote == "distance":
        weights = best.clamp_min(0) if metric == "cosine" else 1.0 / (1.0 + (-best).clamp_min(0).sqrt())
    else:
        raise ValueError(f"unknown vote {vote!r}: use majority or distance")
    scores = torch.zeros(n, num_classes, device=q.device)
    scores.scatter_add_(1, labels, weights)
    # Break vote ties by the nearest neighbour's class: add a tiny bonus for it.
    scores.scatter_add_(1, labels[:, :1], torch.full((n, 1), 1e-6, device=q.device))
    return scores
