"""Naive float64 references for the kernels: loops and full matrices, obviously right."""

from __future__ import annotations

import torch


def ref_class_stats(features, labels, num_classes, normalize=False):
    x = features.double()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    for c in range(num_classes):
        mask = labels == c
        counts[c] = mask.sum()
        sums[c] = x[mask].sum(0)
    outer = sum(
        (row[:, None] * row[None, :] for row in x),
        torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64),
    )
    return counts, sums, outer


def within_class_scatter(counts, sums, outer):
    """The LDA quantity: sum over samples of (x - mu_y)(x - mu_y)^T."""
    return outer - (sums.T / counts.clamp_min(1)) @ sums


def ref_scores(queries, prototypes, metric, bias=None):
    q, p = queries.double(), prototypes.double()
    if metric == "cosine":
        return (q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ (
            p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
        ).T
    if metric == "euclidean":
        return -(torch.cdist(q, p) ** 2)
    scores = q @ p.T
    return scores if bias is None else scores + bias.double()


def ref_neighbours(queries, bank, k, metric):
    """All query x bank scores, then a stable sort: ties go to the lower bank index."""
    scores = ref_scores(queries, bank, metric)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[
        :, : min(k, bank.shape[0])
    ]
    return scores.gather(1, order), order


def ref_votes(queries, bank, bank_labels, num_classes, k, metric, vote):
    values, order = ref_neighbours(queries, bank, k, metric)
    out = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64)
    for row in range(queries.shape[0]):
        for rank in range(order.shape[1]):
            value = values[row, rank].item()
            if vote == "majority":
                weight = 1.0
            elif metric == "cosine":
                weight = max(value, 0.0)
            else:
                weight = 1.0 / (1.0 + max(-value, 0.0) ** 0.5)
            out[row, bank_labels[order[row, rank]]] += weight
        out[row, bank_labels[order[row, 0]]] += 1e-6
    return out
