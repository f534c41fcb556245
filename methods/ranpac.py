"""RanPAC (McDonnell et al., NeurIPS 2023): random projection of PTM features and a ridge classifier.

Features (frozen, or from a PTM adapted on the first task with an AdaptFormer
adapter, ``first_session``) are projected by a fixed Gaussian matrix W (D x M,
M = 10,000) and passed through ReLU: h = relu(f W). The class sums Q = sum h y^T
and the Gram matrix G = sum h h^T are accumulated exactly (float64, through
``clbench.kernels.class_stats(..., outer=True)``) task after task; no feature is
stored. The head is the ridge solution W_o = (G + lambda I)^-1 Q.

Scores (``head_scoring``): ``product`` (default) is h W_o^T, the paper's rule and
the authors' code (RanPAC/RanPAC ``inc_net.py:39``, ``CosineLinear.forward`` with
``use_RP`` set: a plain linear map of relu(f W)). ``cosine`` L2-normalises h and
each class row of W_o first, as LAMDA-PILOT's port does (its ridge head sits in
a ``CosineLinear``, ``backbone/linears.py:58``); kept for parity with PILOT,
see reports/fidelity.md.

lambda is chosen from ``ridges`` on a held-out fraction ``holdout`` of the
current task's training samples (a seeded random split), by the least squared
error against their one-hot labels. ``ridge_fit`` says what the candidate heads
are fitted on:

- ``task`` (default): the rest of the current task's samples alone, the rule of
  the authors' code (RanPAC/RanPAC ``RanPAC.py:138-150``) and of PILOT
  (``models/ranpac.py:66-78``). It is solved in the dual, from the n x n kernel
  of the fitted samples (n a few hundred), so no M x M system is decomposed:
  H^T (H H^T + lambda I)^-1 Y equals (H^T H + lambda I)^-1 H^T Y.
- ``seen``: the earlier tasks' statistics plus the rest of the current task, so
  the held-out error is that of the head the run will actually use, over every
  seen class; it needs one eigendecomposition of the M x M Gram per task.

The final head is solved from all statistics with the chosen lambda.

Defaults: PILOT's ImageNet-R configuration (``exps/ranpac_inr.json``): adapter
bottleneck 64, 10 epochs, SGD lr 0.05, batch 16, weight decay 0.005, cosine,
M = 10,000, lambda in 10^-8 .. 10^8.
"""

from __future__ import annotations

import torch

from clbench.data import Inputs, Samples
from clbench.errors import ConfigError
from clbench.kernels import ClassStats, class_stats
from clbench.methods.adaptation import Adapted, adapt_first_session
from clbench.methods.base import FeatureLearner
from clbench.methods.peft import attach_adapters, freeze
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, resolve_train

FIRST_SESSION = ("adapter", "frozen")
HEAD_SCORING = ("product", "cosine")
RIDGE_FIT = ("task", "seen")
RIDGES = tuple(10.0**k for k in range(-8, 9))


def random_features(features: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """RanPAC's h = relu(f W), in float64 (the Gram matrix is accumulated exactly)."""
    return torch.relu(features.double() @ projection)


def ridge_solve(stats: ClassStats, ridge: float) -> torch.Tensor:
    """(C, M) head ``((G + ridge I)^-1 Q)^T`` with G = ``stats.outer`` and Q = ``stats.sums.T``."""
    gram = stats.outer + ridge * torch.eye(stats.outer.shape[0], dtype=stats.outer.dtype)
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise ConfigError(
            f"the RanPAC Gram matrix with ridge {ridge:g} is not positive definite",
            "use larger ridges (--set ridges=[1.0,10.0,100.0])",
        )
    return torch.cholesky_solve(stats.sums.T, factor).T


def score_head(h: torch.Tensor, head: torch.Tensor, rule: str) -> torch.Tensor:
    """Class scores of random features ``h`` (n, M) under a (C, M) ridge ``head``.

    ``product``: h W_o^T. ``cosine``: both h and each class row of W_o are
    L2-normalised first, so a class's score no longer grows with its row's norm
    (that changes the argmax whenever class rows differ in norm).
    """
    if rule == "cosine":
        h = torch.nn.functional.normalize(h, dim=1)
        head = torch.nn.functional.normalize(head, dim=1)
    return h @ head.T


def select_ridge(
    stats: ClassStats, held_out: torch.Tensor, labels: torch.Tensor, ridges: tuple[float, ...]
) -> tuple[float, list[float]]:
    """The ridge whose head (solved from ``stats``) has the least one-hot MSE on ``held_out``.

    One eigendecomposition G = V diag(e) V^T serves every candidate:
    (G + r I)^-1 Q = V diag(1 / (e + r)) V^T Q.
    """
    eigenvalues, vectors = torch.linalg.eigh(stats.outer)
    projected_q = vectors.T @ stats.sums.T  # (M, C)
    projected_x = held_out @ vectors  # (n, M)
    target = torch.nn.functional.one_hot(labels, stats.num_classes).double()
    return least_error_ridge(projected_x, projected_q, eigenvalues, target, ridges)


def least_error_ridge(
    projected_x: torch.Tensor,
    projected_q: torch.Tensor,
    eigenvalues: torch.Tensor,
    target: torch.Tensor,
    ridges: tuple[float, ...],
) -> tuple[float, list[float]]:
    """The candidate with the least MSE of ``projected_x diag(1 / (e + r)) projected_q``
    against ``target``, and every candidate's error (both ridge selections end here)."""
    errors = []
    for ridge in ridges:
        scores = projected_x @ (projected_q / (eigenvalues.clamp_min(0) + ridge)[:, None])
        errors.append(float(((scores - target) ** 2).mean()))
    best = min(range(len(ridges)), key=errors.__getitem__)
    return ridges[best], errors


def select_ridge_on_task(
    fitted: torch.Tensor,
    fitted_labels: torch.Tensor,
    held_out: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ridges: tuple[float, ...],
) -> tuple[float, list[float]]:
    """The ridge whose head fitted on ``fitted`` alone has the least one-hot MSE on ``held_out``.

    The dual form: with K = H H^T = U diag(s) U^T (n x n), the held-out scores
    of the head (H^T H + r I)^-1 H^T Y are H_val H^T U diag(1 / (s + r)) U^T Y.
    """
    eigenvalues, vectors = torch.linalg.eigh(fitted @ fitted.T)
    target = torch.nn.functional.one_hot(labels, num_classes).double()
    projected_y = vectors.T @ torch.nn.functional.one_hot(fitted_labels, num_classes).double()
    projected_x = (held_out @ fitted.T) @ vectors  # (n_val, n)
    return least_error_ridge(projected_x, projected_y, eigenvalues, target, ridges)


@register_method("ranpac")
class RanPAC(FeatureLearner):
    """Random projection + ReLU to M dims, exact running Gram, ridge head with a held-out lambda."""

    def __init__(
        self,
        first_session: str = "adapter",
        projection_dim: int = 10_000,
        ridges: tuple[float, ...] = RIDGES,
        holdout: float = 0.2,
        bottleneck: int = 64,
        adapter_scale: float = 0.1,
        head_scoring: str = "product",
        ridge_fit: str = "task",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if first_session not in FIRST_SESSION:
            raise ConfigError(
                f"unknown first_session {first_session!r}", f"use one of {', '.join(FIRST_SESSION)}"
            )
        if head_scoring not in HEAD_SCORING:
            raise ConfigError(
                f"unknown head_scoring {head_scoring!r}",
                f"use one of {', '.join(HEAD_SCORING)} (--set head_scoring=product)",
            )
        if ridge_fit not in RIDGE_FIT:
            raise ConfigError(
                f"unknown ridge_fit {ridge_fit!r}",
                f"use one of {', '.join(RIDGE_FIT)} (--set ridge_fit=task)",
            )
        if projection_dim <= 0 or not 0.0 < holdout < 1.0 or not ridges or min(ridges) <= 0:
            raise ConfigError(
                "RanPAC needs projection_dim > 0, 0 < holdout < 1 and positive ridges",
                "e.g. --set projection_dim=10000 --set holdout=0.2",
            )
        self.first_session = first_session
        self.projection_dim = projection_dim
        self.ridges = tuple(float(r) for r in ridges)
        self.holdout = holdout
        self.train = resolve_train(self.default_train(), train)
        self.bottleneck = bottleneck
        self.adapter_scale = adapter_scale
        self.head_scoring = head_scoring
        self.ridge_fit = ridge_fit
        self.adapted: Adapted | None = None
        self.projection: torch.Tensor | None = None
        self.stats: ClassStats | None = None
        self.head: torch.Tensor | None = None
        self.selected: list[dict] = []

    @staticmethod
    def default_train() -> TrainConfig:
        """The first-session adaptation's schedule (PILOT ImageNet-R)."""
        return TrainConfig(
            epochs=10,
            lr=0.05,
            optimizer="sgd",
            schedule="cosine",
            batch_size=16,
            weight_decay=0.005,
        )

    def prepare(self, model: torch.nn.Module) -> None:
        freeze(model)
        attach_adapters(model, bottleneck=self.bottleneck, scale=self.adapter_scale)

    def learn(self, task: TrainTask) -> None:
        if self.first_session == "adapter" and self.adapted is None:
            self.adapted = adapt_first_session(
                self.ctx, task, self.prepare, self.train, tag="ranpac"
            )
        super().learn(task)

    def embed(self, samples: Samples | Inputs) -> torch.Tensor:
        if self.adapted is not None:
            return self.adapted.features(self.ctx, samples)
        return self.ctx.frozen_features(samples)

    def absorb(self, features: torch.Tensor, labels: torch.Tensor, seen_classes: int) -> None:
        if self.projection is None:
            generator = torch.Generator().manual_seed(self.ctx.seed)
            self.projection = torch.randn(
                features.shape[1], self.projection_dim, generator=generator, dtype=torch.float64
            )
        h = random_features(features, self.projection)
        order = torch.randperm(len(h), generator=torch.Generator().manual_seed(len(self.selected)))
        cut = max(1, int(round(len(h) * self.holdout)))
        held, fit_rows = order[:cut], order[cut:]
        if self.ridge_fit == "task" and len(fit_rows) <= self.projection_dim:
            ridge, errors = select_ridge_on_task(
                h[fit_rows], labels[fit_rows], h[held], labels[held], seen_classes, self.ridges
            )
        else:  # "seen", or a task with more samples than M (the primal is then smaller)
            earlier = self.stats if self.ridge_fit == "seen" else None
            fitted = class_stats(
                h[fit_rows], labels[fit_rows], seen_classes, outer=True, stats=earlier
            )
            ridge, errors = select_ridge(fitted, h[held], labels[held], self.ridges)
        self.selected.append({"ridge": ridge, "held_out": int(cut), "errors": errors})
        self.stats = class_stats(h, labels, seen_classes, outer=True, stats=self.stats)
        self.head = ridge_solve(self.stats, ridge).float()

    def score(self, features: torch.Tensor) -> torch.Tensor:
        assert self.head is not None, "predict() called before learn()"
        h = random_features(features, self.projection).float()
        return score_head(h, self.head, self.head_scoring)

    def trainable_parameters(self) -> int:
        adapted = 0 if self.adapted is None else self.adapted.trained_parameters
        return adapted + (0 if self.head is None else self.head.numel())

    def extra_results(self) -> dict:
        out: dict = {"ridge_selection": self.selected}
        if self.adapted is not None:
            out["adaptation_log"] = self.adapted.log.to_dict()
        return out
