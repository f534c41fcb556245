"""The Evaluator: the only place that runs the continual-learning loop.

For each task it lets the learner learn (training data only), then tests on
every task's test set that the protocol evaluates: the learner receives the
inputs only (``Samples.inputs()``, no labels or answers), the task's scorer
turns its outputs into per-sample scores, and their sum fills row t of the
score-sum matrix (integer correct counts for classification). In a
task-incremental scenario the scores are restricted to the tested task's own
classes before scoring, so every method gets a true task-IL number. It times
each phase, tracks peak memory and trainable parameters, and can checkpoint
after each task so an interrupted run resumes with the same numbers.
"""

from __future__ import annotations

import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clbench.checkpoint import load_checkpoint, save_checkpoint
from clbench.context import RunContext
from clbench.errors import ClbenchError, ConfigError
from clbench.learner import Learner, rng_state, seed_everything, set_rng_state
from clbench.scenario import Scenario, Task
from clbench.scoring import get_scorer, score_outputs


@dataclass
class Evaluation:
    """Raw measurements of one run; metrics are computed from these, not stored twice."""

    scores: np.ndarray  # (T, T) float score sums, NaN where not evaluated
    counts: np.ndarray  # (T,) test samples per task
    integer: bool = True  # every scorer is 0/1 per sample: the sums are correct counts
    learn_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    trainable_parameters: list[int] = field(default_factory=list)
    resumed_from: int | None = None
    initial: np.ndarray | None = None
    """(T + H,) score sums before any learning, stream tasks then held-out tasks
    (instruction streams only; ``Scenario.tests_before_learning``)."""
    heldout: np.ndarray | None = None
    """(T, H) score sums on the held-out tasks after each step."""
    eval_seconds_before: float = 0.0

    def scores_or_none(self) -> list[list[float | int | None]]:
        """The matrix as stored: None where not evaluated, ints when the sums are counts."""
        cast = int if self.integer else float
        return [[cast(c) if np.isfinite(c) else None for c in row] for row in self.scores]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _step(match: re.Match) -> int:
    return int(match[1])


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (s): the fair cost on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_compatible(learner: type[Learner] | Learner, scenario: Scenario, method: str) -> None:
    """Refuse, before anything runs, a method paired with a protocol or modality it cannot serve."""
    setting, modality = scenario.setting, scenario.modality
    if modality not in learner.modalities:
        raise ConfigError(
            f"method {method!r} works on {'/'.join(sorted(learner.modalities))} inputs, "
            f"but scenario {scenario.name!r} has {modality} inputs",
            "`clbench list methods` shows what each method supports",
        )
    if setting not in learner.protocols:
        raise ConfigError(
            f"method {method!r} does not serve the {setting} protocol of {scenario.name!r} "
            f"(it serves {', '.join(sorted(learner.protocols))})",
            "choose another method or scenario (`clbench list`)",
        )
    if learner.needs_task_id and not scenario.task_incremental and setting != "instruction":
        raise ConfigError(
            f"method {method!r} needs the task id at test time, and {scenario.name!r} is "
            f"{setting} (no task id)",
            "add --set scenario.task_incremental=true, or choose another method",
        )


def restrict_to_task(scores: torch.Tensor, classes: np.ndarray) -> torch.Tensor:
    """Scores with every class outside ``classes`` at -inf (Mammoth's task-IL protocol)."""
    index = torch.as_tensor(np.asarray(classes, dtype=np.int64), device=scores.device)
    masked = torch.full_like(scores, float("-inf"))
    masked[:, index] = scores[:, index]
    return masked


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
        self._static_outputs: dict[int, tuple[float, Any]] = {}  # task index -> (sum, outputs)

    def _evaluated_tasks(self, step: int) -> range:
        return range(self.scenario.num_tasks) if self.scenario.evaluate_unseen else range(step + 1)

    def _check_scores(self, scores: Any, step: int, task: Task) -> None:
        name = type(self.learner).__name__
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
            raise RuntimeError(f"{name}.predict must return a (samples, classes) score tensor")
        if scores.shape[0] != len(task.test):
            raise RuntimeError(
                f"{name}.predict returned {scores.shape[0]} rows for {len(task.test)} samples"
            )
        width = self.scenario.tasks[step].seen_classes
        if (
            self.scenario.grows_label_space
            and not self.scenario.evaluate_unseen
            and scores.shape[1] > width
        ):
            raise RuntimeError(
                f"{name}.predict scored {scores.shape[1]} classes after task {step}, "
                f"but only {width} have been seen"
            )

    @torch.no_grad()
    def test(self, step: int, test_index: int) -> float:
        """The score sum of the learner on task ``test_index``'s test set after ``step``."""
        return self.test_task(step, self.scenario.tasks[test_index])

    @torch.no_grad()
    def test_task(self, step: int, task: Task) -> float:
        """The score sum on ``task``'s test set after ``step`` (-1: before any learning)."""
        scenario, test_index = self.scenario, task.index
        if len(task.test) == 0:
            return 0.0
        scorer = get_scorer(task.scorer)
        label_space = (
            {
                "classes": task.classes,
                "class_names": task.class_names,
                "prompt_template": task.prompt_template,
            }
            if scenario.task_incremental
            else {}
        )
        if test_index in self._static_outputs:  # a static learner: the same answers again
            total, outputs = self._static_outputs[test_index]
            self.learner.on_tested(step, test_index, task.test, outputs)
            return total
        inputs = task.test.inputs(scorer.output, **label_space)
        told = scenario.task_incremental and (
            self.learner.uses_task_id or self.learner.needs_task_id
        )
        outputs = self.learner.predict(inputs, task_id=test_index if told else None)
        if scorer.output == "class-scores":
            self._check_scores(outputs, step, task)
            if scenario.task_incremental:
                outputs = restrict_to_task(outputs, task.classes)
        per_sample = score_outputs(task.scorer, outputs, task.test)
        self.learner.on_tested(step, test_index, task.test, outputs)
        if self.learner.static:
            self._static_outputs[test_index] = (float(per_sample.sum()), outputs)
        return float(per_sample.sum())

    def run(self, resume: bool = False) -> Evaluation:
        scenario, learner = self.scenario, self.learner
        n = scenario.num_tasks
        seed_everything(self.ctx.seed)
        learner.setup(self.ctx)
        result = Evaluation(
            scores=np.full((n, n), np.nan),
            counts=np.array([len(t.test) for t in scenario.tasks], dtype=np.int64),
            integer=all(get_scorer(name).integer for name in scenario.scorers),
        )
        heldout = scenario.heldout
        if heldout:
            result.heldout = np.full((n, len(heldout)), np.nan)
        start = 0
        if resume:
            start = self._restore(result)
        if start == 0 and scenario.tests_before_learning:
            began = time.perf_counter()
            result.initial = np.array(
                [self.test_task(-1, t) for t in [*scenario.tasks, *heldout]], dtype=float
            )
            result.eval_seconds_before = time.perf_counter() - began
        for step in range(start, n):
            task = scenario.tasks[step]
            began = time.perf_counter()
            learner.learn(task.train_view())
            result.learn_seconds.append(time.perf_counter() - began)
            began = time.perf_counter()
            for i in self._evaluated_tasks(step):
                result.scores[step, i] = self.test(step, i)
            for h, held in enumerate(heldout):
                result.heldout[step, h] = self.test_task(step, held)
            result.eval_seconds.append(time.perf_counter() - began)
            result.trainable_parameters.append(int(learner.trainable_parameters()))
            self._checkpoint(step, result)
            if self.on_task_end is not None:
                self.on_task_end(step, result)
        return result

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self, step: int, result: Evaluation) -> None:
        if self.checkpoint_dir is None or not self.learner.checkpointable:
            return
        state: dict[str, Any] = {
            "step": step,
            "split_hash": self.scenario.split_hash,
            "learner": self.learner.state_dict(),
            "result": result,
            "rng": rng_state(),
        }
        try:
            save_checkpoint(state, self.checkpoint_dir / f"task{step}.pt")
        except OSError as exc:  # checkpoints only serve --resume: the run goes on
            print(
                f"clbench: warning: could not write a checkpoint in {self.checkpoint_dir} "
                f"({exc.strerror or exc}); --resume will start this run over",
                file=sys.stderr,
            )
            return
        for old in self.checkpoint_dir.glob("task*.pt"):
            if old.name != f"task{step}.pt":
                old.unlink()

    def _restore(self, result: Evaluation) -> int:
        if self.checkpoint_dir is None or not self.learner.checkpointable:
            return 0  # such a learner's interrupted run starts over
        numbered = (re.fullmatch(r"task(\d+)\.pt", p.name) for p in self.checkpoint_dir.glob("*"))
        saved = [self.checkpoint_dir / m[0] for m in sorted(filter(None, numbered), key=_step)]
        if not saved:
            return 0
        state = load_checkpoint(saved[-1])  # tensors, plain data and network modules only
        if state["split_hash"] != self.scenario.split_hash:
            raise ClbenchError(
                f"checkpoint {saved[-1]} belongs to another split of this scenario",
                "run without --resume to start over",
            )
        self.learner.load_state_dict(state["learner"])
        previous: Evaluation = state["result"]
        result.scores[:] = previous.scores
        result.learn_seconds[:] = previous.learn_seconds
        result.eval_seconds[:] = previous.eval_seconds
        result.trainable_parameters[:] = previous.trainable_parameters
        result.initial = previous.initial
        result.heldout = previous.heldout
        result.eval_seconds_before = previous.eval_seconds_before
        result.resumed_from = state["step"] + 1
        set_rng_state(state["rng"])
        return state["step"] + 1
