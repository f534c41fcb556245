"""``scenario.task_incremental``: an option of every scenario; the test phase then
receives the task id, and the stored result says so."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from clbench.cli import main
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.learner import Learner
from clbench.runner import build_scenario
from tests.dataset_layouts import write_cifar100


class TaskIdRecorder(Learner):
    """Predicts class 0 and remembers which task ids the evaluator passed."""

    def __init__(self) -> None:
        self.seen_ids: list[int | None] = []

    def learn(self, task) -> None:
        self.width = task.seen_classes

    def predict(self, samples, task_id=None) -> torch.Tensor:
        self.seen_ids.append(task_id)
        return torch.zeros(len(samples), self.width)


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    write_cifar100(tmp_path)


@pytest.mark.parametrize("flag", [False, True])
def test_evaluator_passes_the_task_id_only_when_asked(cifar, flag):
    scenario = build_scenario("cifar100", {"increment": 50, "task_incremental": flag})
    assert scenario.task_incremental is flag
    learner = TaskIdRecorder()
    Evaluator(scenario, learner, SimpleNamespace(seed=0)).run()
    # after task 0: test task 0; after task 1: tasks 0 and 1
    assert learner.seen_ids == ([0, 0, 1] if flag else [None, None, None])
    assert scenario.protocol.get("task_incremental", False) is flag


def test_task_incremental_must_be_a_boolean(cifar):
    with pytest.raises(ConfigError, match="true or false"):
        build_scenario("cifar100", {"task_incremental": "yes"})


@pytest.mark.integration
def test_cli_records_task_incremental_in_the_result(capsys):
    code = main(
        [
            "run",
            "--scenario",
            "emoji-cil",
            "--method",
            "simplecil",
            "--no-store",
            "--json",
            "--set",
            "scenario.task_incremental=true",
            "--set",
            "scenario.num_tasks=2",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task_incremental"] is True
    assert result["config"]["scenario"]["protocol"]["task_incremental"] is True
