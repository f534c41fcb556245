"""EAR, the Encoder-Adaptor-Reconfigurator (Daniels et al., "Efficient Model Adaptation for
Continual Learning at the Edge", arXiv 2308.02084).

No public code exists. What the paper's text (abstract, read via ar5iv) confirms,
and what clbench chose where it says nothing that could be read:

Paper: a fixed DNN feature encoder with shallow networks trained on top of it
for novel data; OOD detection of new data by combining the encoder's features
with hyperdimensional computing; low-parameter adaptors found by zero-shot NAS;
the architecture grown progressively as needed and each input routed through
the appropriate adaptor and reconfigurator; domain- and class-incremental.

clbench's choices (each a parameter where it is a number):
- Encoder: the run's frozen backbone; its pooled features come from the
  feature cache, so EAR never runs the encoder twice on an image.
- HDC (``clbench.methods.hdc``): a fixed random Gaussian projection of the
  features (not centred: measured better, see ``HyperProjector``) to
  ``hv_dim`` = 10,000 dimensions and the sign; one bundled
  memory per class per adaptor; an input's score for an adaptor is its best
  cosine similarity to that adaptor's class memories.
- Threshold: for each adaptor, the ``quantile`` (5%) of its training samples'
  leave-one-out scores, so about 95% of in-distribution data passes it. A new
  task is in distribution for an adaptor when at least ``id_fraction`` (half)
  of its training samples pass that adaptor's threshold; then the adaptor with
  the most passing samples is reused (frozen, it only gains the new classes'
  prototypes and memories); otherwise the model grows.
- Adaptor (``clbench.methods.zeronas``): a residual bottleneck MLP on the
  features, identity at initialisation; search space of widths {32, 64, 128,
  256} and depths {1, 2}; budget ``budget`` (10%) of the encoder's parameters;
  proxy NASWOT (label- and gradient-free, for ReLU networks) on at most
  ``proxy_batch`` training inputs (capped so its kernel can be full rank); the best-ranked
  candidate is trained with a temporary linear head (cross-entropy over the
  task's classes), then frozen.
- Reconfigurator: cosine class-mean prototypes in each adaptor's output space
  (training-free, so reusing an adaptor for new classes needs no retraining and
  no head is biased towards the latest task).
- Routing: each test input goes to the adaptor whose memories match it best
  (largest raw similarity); the scores are that adaptor's prototype scores.

Stored in the RunResult extra: per task the OOD scores (summary), the per-adaptor
pass fractions and thresholds, the decision, the OOD AUROC of the task's data
against the existing adaptors' calibration data; per grown adaptor every
candidate with its size and proxy score and the chosen one; per tested task the
routing accuracy (how often an input reached its own task's adaptor, with the
truth given by the evaluator after predict, never to predict).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from clbench.checkpoint import checkpoint_state
from clbench.data import Inputs, Samples
from clbench.errors import ConfigError
from clbench.kernels import ClassStats, class_stats, prototype_scores
from clbench.learner import Learner
from clbench.methods.hdc import DEFAULT_DIM, ClassMemory, HyperProjector, auroc
from clbench.methods.peft import count_parameters
from clbench.methods.zeronas import (
    Adaptor,
    Candidate,
    proxy_batch_size,
    rank_candidates,
    search_space,
)
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig, fit, resolve_train, tensor_batches

#: Score of classes the routed adaptor has no prototype for.
EXCLUDED = -1e9


def summary(scores: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(scores.float(), torch.tensor([0.05, 0.5, 0.95])).tolist()
    return {"mean": float(scores.mean()), "q05": q[0], "median": q[1], "q95": q[2]}


@checkpoint_state
class Branch:
    """One adaptor with its memories, calibration scores and prototypes."""

    def __init__(self, adaptor: Adaptor, dim: int) -> None:
        self.adaptor = adaptor
        self.memory = ClassMemory(dim)
        self.calibration = torch.empty(0)
        self.stats: ClassStats | None = None

    def threshold(self, quantile: float) -> float:
        return float(torch.quantile(self.calibration, quantile))


@register_method("ear")
class EAR(Learner):
    """Frozen encoder, HDC OOD detector, zero-shot-NAS adaptors grown on shift, memory routing."""

    protocols = frozenset({"class-incremental", "domain-incremental", "task-incremental"})
    modalities = frozenset({"image"})
    uses_task_id = False
    needs_task_id = False

    def __init__(
        self,
        hv_dim: int = DEFAULT_DIM,
        quantile: float = 0.05,
        id_fraction: float = 0.5,
        budget: float = 0.1,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        depths: tuple[int, ...] | list[int] = (1, 2),
        proxy_batch: int = 64,
        train: TrainConfig | dict | None = None,
    ) -> None:
        if not 0 < quantile < 1 or not 0 < id_fraction <= 1 or budget <= 0:
            raise ConfigError(
                f"EAR needs 0 < quantile < 1, 0 < id_fraction <= 1 and budget > 0 "
                f"(got {quantile}, {id_fraction}, {budget})",
                "e.g. --set quantile=0.05 --set id_fraction=0.5 --set budget=0.05",
            )
        self.hv_dim = hv_dim
        self.quantile = quantile
        self.id_fraction = id_fraction
        self.budget = budget
        self.widths = tuple(widths)
        self.depths = tuple(depths)
        self.proxy_batch = proxy_batch
        self.train = resolve_train(self.default_train(), train)
        self.projector: HyperProjector | None = None
        self.branches: list[Branch] = []
        self.adaptor_of_task: list[int] = []
        self.seen_classes = 0
        self.decisions: list[dict[str, Any]] = []
        self.searches: list[dict[str, Any]] = []
        self.routing: list[dict[str, Any]] = []
        self.last_routes: np.ndarray | None = None

    @staticmethod
    def default_train() -> TrainConfig:
        # Adaptors train on cached features (no image passes), so many epochs are cheap.
        return TrainConfig(epochs=30, lr=1e-3, optimizer="adam", schedule="cosine", batch_size=32)

    # -- detection ------------------------------------------------------------------------
    def adaptor_scores(self, hypervectors: torch.Tensor) -> torch.Tensor:
        """(n, adaptors) in-distribution scores: best class-memory similarity per adaptor."""
        return torch.stack([b.memory.score(hypervectors) for b in self.branches], dim=1)

    def detect(self, hypervectors: torch.Tensor, index: int) -> dict[str, Any]:
        """Decide whether a task's training data is in distribution for an existing adaptor."""
        record: dict[str, Any] = {"task": index}
        if not self.branches:
            return {**record, "decision": "grow", "reason": "no adaptor yet"}
        scores = self.adaptor_scores(hypervectors)
        thresholds = torch.tensor([b.threshold(self.quantile) for b in self.branches])
        passing = (scores >= thresholds).float().mean(0)
        best = int(passing.argmax())
        calibration = torch.cat([b.calibration for b in self.branches])
        record.update(
            scores=summary(scores.max(1).values),
            thresholds=thresholds.tolist(),
            pass_fraction=passing.tolist(),
            # how well the ID score separates the existing adaptors' data from the new task's
            ood_auroc=auroc(calibration, scores.max(1).values),
        )
        if passing[best] >= self.id_fraction:
            return {**record, "decision": "reuse", "adaptor": best}
        return {**record, "decision": "grow"}

    # -- growth ---------------------------------------------------------------------------
    def search(self, features: torch.Tensor, index: int) -> tuple[list[dict], int]:
        """Candidates ranked by the zero-shot proxy on task ``index``'s features, and the budget."""
        encoder = self.ctx.backbone_info.parameter_count  # known without building the network
        budget = int(self.budget * encoder)
        candidates = search_space(self.widths, self.depths)
        generator = torch.Generator().manual_seed(self.ctx.seed + index)
        order = torch.randperm(len(features), generator=generator)
        batch = features[order[: proxy_batch_size(candidates, self.proxy_batch)]]
        ranked = rank_candidates(candidates, batch, budget, seed=self.ctx.seed + 1000 * index)
        if not ranked[0]["within_budget"]:
            raise ConfigError(
                f"no EAR adaptor fits the budget of {budget:,} parameters "
                f"({self.budget:g} x {encoder:,} encoder parameters)",
                "raise --set budget= or add smaller --set widths=",
            )
        return ranked, budget

    def grow(self, features: torch.Tensor, labels: np.ndarray, index: int) -> Branch:
        dim = features.shape[1]
        ranked, budget = self.search(features, index)
        chosen = ranked[0]
        adaptor = Candidate(tuple(chosen["widths"])).build(dim, chosen["seed"])
        log = self.train_adaptor(adaptor, features, labels, index)
        self.searches.append(
            {
                "task": index,
                "budget": budget,
                "candidates": ranked,
                "chosen": chosen["name"],
                "chosen_parameters": count_parameters(adaptor),
                "train_log": log,
            }
        )
        adaptor.requires_grad_(False).eval()
        return Branch(adaptor, self.hv_dim)

    def train_adaptor(
        self, adaptor: Adaptor, features: torch.Tensor, labels: np.ndarray, index: int
    ) -> list[dict]:
        classes = np.unique(labels)
        local = torch.from_numpy(np.searchsorted(classes, labels))
        head = nn.Linear(features.shape[1], len(classes))
        model = nn.Sequential(adaptor, head)

        def step(batch):
            x, y = batch
            logits = model(x)
            return nn.functional.cross_entropy(logits, y), logits, y

        batches = tensor_batches(
            features.float(), local, batch_size=self.train.batch_size, seed=self.ctx.seed + index
        )
        cfg = self.train
        log = fit(
            model.parameters(),
            batches,
            step,
            cfg,
            torch.device("cpu"),
            f"ear adaptor {index}",
            modules=[model],
        )
        return log.to_dict()

    # -- the learner ----------------------------------------------------------------------
    def learn(self, task: TrainTask) -> None:
        features = self.ctx.frozen_features(task.train).float()
        labels = task.train.labels
        self.seen_classes = max(self.seen_classes, task.seen_classes)
        if self.projector is None:
            self.projector = HyperProjector(features.shape[1], self.hv_dim, seed=self.ctx.seed)
        hypervectors = self.projector.encode(features)
        decision = self.detect(hypervectors, task.index)
        if decision["decision"] == "grow":
            self.branches.append(self.grow(features, labels, task.index))
            decision["adaptor"] = len(self.branches) - 1
        a = decision["adaptor"]
        branch = self.branches[a]
        decision["parameters_added"] = (
            count_parameters(branch.adaptor, trainable_only=False)
            if decision["decision"] == "grow"
            else 0
        )
        branch.memory.add(hypervectors, labels)
        branch.calibration = torch.cat(
            [branch.calibration, branch.memory.leave_one_out_score(hypervectors, labels)]
        )
        with torch.no_grad():
            embedded = branch.adaptor(features)
        branch.stats = class_stats(
            embedded, torch.from_numpy(labels), self.seen_classes, stats=branch.stats
        )
        self.adaptor_of_task.append(a)
        self.decisions.append(decision)

    @torch.no_grad()
    def predict(self, inputs: Inputs, task_id: int | None = None) -> torch.Tensor:
        assert self.projector is not None, "predict() called before learn()"
        features = self.ctx.frozen_features(inputs).float()
        routes = self.adaptor_scores(self.projector.encode(features)).argmax(1)
        self.last_routes = routes.numpy()
        scores = torch.full((len(inputs), self.seen_classes), EXCLUDED)
        for a, branch in enumerate(self.branches):
            rows = torch.nonzero(routes == a).flatten()
            if len(rows) == 0:
                continue
            known = torch.nonzero(branch.stats.counts > 0).flatten()
            means = branch.stats.means.float()[known]
            part = prototype_scores(branch.adaptor(features[rows]), means, "cosine")
            scores[rows[:, None], known[None, :]] = part
        return scores

    def on_tested(
        self, step: int, task_index: int, samples: Samples, outputs: torch.Tensor
    ) -> None:
        """Routing accuracy against the evaluator's truth (the tested task's own adaptor)."""
        if self.last_routes is None or task_index >= len(self.adaptor_of_task):
            return
        own = self.adaptor_of_task[task_index]
        self.routing.append(
            {
                "step": step,
                "task": task_index,
                "adaptor": own,
                "routing_accuracy": float(np.mean(self.last_routes == own)),
                "samples": len(self.last_routes),
            }
        )

    def trainable_parameters(self) -> int:
        return sum(count_parameters(b.adaptor, trainable_only=False) for b in self.branches)

    def extra_results(self) -> dict[str, Any]:
        return {
            "ood_decisions": self.decisions,
            "adaptor_search": self.searches,
            "adaptor_of_task": self.adaptor_of_task,
            "routing": self.routing,
        }
