"""The Evaluator: the only place that runs the continual-learning loop.

For each task it lets the learner learn (training data only), then tests on
every task's test set that the protocol evaluates, filling row t of the
correct-count matrix. It times each phase, tracks peak memory and trainable
parameters, and can checkpoint after each task so an interrupted run resumes
with the same numbers.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clbench.context import RunContext
from clbench.errors import ClbenchError
from clbench.learner import Learner, rng_state, seed_everything, set_rng_state
from clbench.scenario import Scenario


@dataclass
class Evaluation:
    """Raw measurements of one run; metrics are computed from these, not stored twice."""

    correct: np.ndarray  # (T, T) int, -1 where not evaluated
    counts: np.ndarray  # (T,) test samples per task
    learn_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    trainable_parameters: list[int] = field(default_factory=list)
    resumed_from: int | None = None

    def correct_or_none(self) -> list[list[int | None]]:
        return [[int(c) if c >= 0 else None for c in row] for row in self.correct]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


class Evaluator:
    def __init__(
        self,
        scenario: Scenario,
        learner: Learner,
        ctx: RunContext,
        checkpoint_dir: Path | None = None,
        on_task_end=None,
    ) -> None:
        self.scenario = scenario
        self.learner = learner
        self.ctx = ctx
        self.checkpoint_dir = checkpoint_dir
        self.on_task_end = on_task_end

    def _evaluated_tasks(self, step: int) -> range:
        return range(self.scenario.num_tasks) if self.scenario.evaluate_unseen else range(step + 1)

    @torch.no_grad()
    def test(self, step: int, test_index: int) -> int:
        task = self.scenario.tasks[test_index]
        if len(task.test) == 0:
            return 0
        task_id = test_index if self.scenario.task_incremental else None
        scores = self.learner.predict(task.test, task_id=task_id)
        expected_width = self.scenario.tasks[step].seen_classes
        if scores.shape[0] != len(task.test):
            raise RuntimeError(
                f"{type(self.learner).__name__}.predict returned {scores.shape[0]} rows "
                f"for {len(task.test)} samples"
            )
        if scores.shape[1] > expected_width and self.scenario.kind != "domain-incremental":
            raise RuntimeError(
                f"{type(self.learner).__name__}.predict scored {scores.shape[1]} classes "
                f"after task {step}, but only {expected_width} have been seen"
            )
        # Stand-in for the contract's evaluator-side hook (issue 10): the truth, after predict.
        hook = getattr(self.learner, "on_tested", None)
        if hook is not None:
            hook(step, test_index, task.test, scores)
        predictions = scores.argmax(dim=1).cpu().numpy()
        return int((predictions == task.test.labels).sum())

    def run(self, resume: bool = False) -> Evaluation:
        scenario, learner = self.scenario, self.learner
        n = scenario.num_tasks
        seed_everything(self.ctx.seed)
        learner.setup(self.ctx)
        result = Evaluation(
            correct=np.full((n, n), -1, dtype=np.int64),
            counts=np.array([len(t.test) for t in scenario.tasks], dtype=np.int64),
        )
        start = 0
        if resume:
            start = self._restore(result)
        for step in range(start, n):
            task = scenario.tasks[step]
            began = time.perf_counter()
            learner.learn(task.train_view())
            result.learn_seconds.append(time.perf_counter() - began)
            began = time.perf_counter()
            for i in self._evaluated_tasks(step):
                result.correct[step, i] = self.test(step, i)
            result.eval_seconds.append(time.perf_counter() - began)
            result.trainable_parameters.append(int(learner.trainable_parameters()))
            self._checkpoint(step, result)
            if self.on_task_end is not None:
                self.on_task_end(step, result)
        return result

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self, step: int, result: Evaluation) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "step": step,
            "split_hash": self.scenario.split_hash,
            "learner": self.learner.state_dict(),
            "result": result,
            "rng": rng_state(),
        }
        tmp = self.checkpoint_dir / f".task{step}.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_dir / f"task{step}.pt")
        for old in self.checkpoint_dir.glob("task*.pt"):
            if old.name != f"task{step}.pt":
                old.unlink()

    def _restore(self, result: Evaluation) -> int:
        if self.checkpoint_dir is None:
            return 0
        saved = sorted(self.checkpoint_dir.glob("task*.pt"), key=lambda p: int(p.stem[4:]))
        if not saved:
            return 0
        state = torch.load(saved[-1], map_location="cpu", weights_only=False)
        if state["split_hash"] != self.scenario.split_hash:
            raise ClbenchError(
                f"checkpoint {saved[-1]} belongs to another split of this scenario",
                "run without --resume to start over",
            )
        self.learner.load_state_dict(state["learner"])
        previous: Evaluation = state["result"]
        result.correct[:] = previous.correct
        result.learn_seconds[:] = previous.learn_seconds
        result.eval_seconds[:] = previous.eval_seconds
        result.trainable_parameters[:] = previous.trainable_parameters
        result.resumed_from = state["step"] + 1
        set_rng_state(state["rng"])
        return state["step"] + 1
