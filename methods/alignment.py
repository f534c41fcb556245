"""Classifier alignment from per-class Gaussians, shared by MOS and SLCA.

After a task, each new class's features (under the network of that moment)
are summarised by a Gaussian (mean, covariance + eps I); the linear head is
then re-trained on draws from every seen class's Gaussian, so old classes are
represented without storing any image or feature. SLCA normalises the logits
before the cross-entropy (``logit_norm``): each sample's logits are divided by
the mean over tasks of their per-task L2 norms, times a temperature.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clbench.checkpoint import checkpoint_state
from clbench.training import TrainConfig, TrainLog, fit


@checkpoint_state
class ClassGaussians:
    """Per-class mean and Cholesky factor of (covariance + eps I), in label order."""

    def __init__(self, eps: float = 1e-4) -> None:
        self.eps = eps
        self.means = torch.empty(0)
        self.factors = torch.empty(0)

    def __len__(self) -> int:
        return len(self.means)

    def add(self, features: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> None:
        """Append the Gaussians of ``classes`` (consecutive labels after the stored ones)."""
        means, factors = [], []
        eye = torch.eye(features.shape[1], dtype=torch.float64)
        for c in classes:
            x = features[labels == c].double()
            cov = torch.cov(x.T) if len(x) > 1 else torch.zeros_like(eye)
            means.append(x.mean(dim=0))
            factors.append(torch.linalg.cholesky(cov + self.eps * eye))
        new_means, new_factors = torch.stack(means).float(), torch.stack(factors).float()
        self.means = new_means if not len(self) else torch.cat([self.means, new_means])
        self.factors = (
            new_factors if not len(self.factors) else torch.cat([self.factors, new_factors])
        )

    def sample(
        self, per_class: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` draws from every class: (features, labels)."""
        noise = torch.randn(len(self), per_class, self.means.shape[1], generator=generator)
        draws = self.means[:, None, :] + noise @ self.factors.transpose(1, 2)
        labels = torch.arange(len(self)).repeat_interleave(per_class)
        return draws.reshape(-1, self.means.shape[1]), labels


@checkpoint_state
class GaussianReplay:
    """Batches for classifier alignment: fresh draws every epoch, shuffled, one batch per class."""

    def __init__(self, gaussians: ClassGaussians, per_class: int, seed: int) -> None:
        self.gaussians = gaussians
        self.per_class = per_class
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.gaussians)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        features, labels = self.gaussians.sample(self.per_class, self.generator)
        order = torch.randperm(len(labels), generator=self.generator)
        for chunk in order.split(self.per_class):
            yield features[chunk], labels[chunk]


def task_normalized_logits(
    logits: torch.Tensor, task_sizes: Sequence[int], temperature: float
) -> torch.Tensor:
    """SLCA's logit normalisation: logits / (mean over tasks of per-task L2 norms) / temperature."""
    norms = torch.stack(
        [part.norm(dim=1) + 1e-7 for part in logits.split(list(task_sizes), dim=1)], dim=1
    )
    return logits / norms.mean(dim=1, keepdim=True) / temperature


def align_classifier(
    head: nn.Linear,
    gaussians: ClassGaussians,
    cfg: TrainConfig,
    device: torch.device,
    seed: int,
    desc: str,
    logit_norm: float | None = None,
    task_sizes: Sequence[int] | None = None,
) -> TrainLog:
    """Re-train ``head`` on ``cfg.batch_size`` draws per class from every Gaussian, per epoch.

    With ``logit_norm`` (SLCA), the cross-entropy sees ``task_normalized_logits``
    over the tasks of ``task_sizes``.
    """
    if logit_norm is not None and task_sizes is None:
        raise ValueError("logit_norm needs the task sizes")

    def step(batch):
        features, labels = (t.to(device) for t in batch)
        logits = head(features).float()
        if logit_norm is not None:
            logits = task_normalized_logits(logits, task_sizes, logit_norm)
        return F.cross_entropy(logits, labels), logits, labels

    replay = GaussianReplay(gaussians, cfg.batch_size, seed=seed)
    return fit(head.parameters(), replay, step, cfg, device, desc=desc, modules=[head])
