"""Synthetic RunResults for leaderboard and regression tests (never stored in leaderboards/)."""

from __future__ import annotations

import numpy as np

from clbench import metrics
from clbench.results import RunResult, new_run_id


def method_config(method: str) -> dict:
    """The configuration a real run of a registered method stores (defaults included)."""
    from clbench.registry import create_method

    try:
        return {"name": method, **create_method(method).hyperparameters()}
    except Exception:  # an unregistered (e.g. hostile) name: nothing to look up
        return {"name": method}


def fake_result(
    method: str = "simplecil",
    scenario: str = "emoji-cil",
    seed: int = 1993,
    backbone: str = "efficientnet-lite0",
    tasks: int = 4,
    level: float = 0.6,
    forgetting: float = 0.05,
    created_at: str = "2026-01-01T00:00:00+00:00",
    protocol: dict | None = None,
    config: dict | None = None,
) -> RunResult:
    """A run whose accuracy after learning task t on task i is ``level`` minus
    ``forgetting`` per later task, with metrics computed like a real run's."""
    counts = np.array([50 + 10 * i for i in range(tasks)])
    correct = np.full((tasks, tasks), -1)
    for t in range(tasks):
        for i in range(t + 1):
            correct[t, i] = int(round(counts[i] * max(0.0, level - forgetting * (t - i))))
    acc = metrics.accuracy_matrix(correct.clip(min=0), counts)
    acc[correct < 0] = np.nan
    return RunResult(
        run_id=new_run_id(scenario, method, seed),
        scenario=scenario,
        scenario_kind="class-incremental",
        method=method,
        backbone=backbone,
        seed=seed,
        config=config
        or {
            "method": method_config(method),
            "scenario": {
                "name": scenario,
                "protocol": protocol or {"init_cls": 2, "increment": 2, "image_size": 112},
            },
            "backbone": {
                "spec": backbone,
                "weights": None,
                "image_size": 112,
                "preprocessing": {"image_size": 112, "overrides": ["image_size"]},
            },
        },
        manifest={
            "created_at": created_at,
            "versions": {"clbench": "0.1.0"},
            "git_commit": "abc123",
        },
        split_hash="0" * 64,
        class_order=list(range(2 * tasks)),
        task_classes=[[2 * t, 2 * t + 1] for t in range(tasks)],
        correct_matrix=[[None if c < 0 else int(c) for c in row] for row in correct],
        test_counts=[int(c) for c in counts],
        accuracy_matrix=[[float(v) for v in row] for row in acc],
        metrics=metrics.summarize(correct.clip(min=0), counts),
        timings={
            "total_seconds": 3.0,
            "learn_seconds": [0.1] * tasks,
            "eval_seconds": [0.1] * tasks,
        },
        peak_memory={"cpu_rss_mb": 400.0, "gpu_allocated_mb": None},
        trainable_parameters=[0] * tasks,
    )
