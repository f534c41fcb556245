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

    uses_task_id = True

    def __init__(self) -> None:
        self.seen_ids: list[int | None] = []
        self.label_spaces: list[tuple[str, ...] | None] = []

    def learn(self, task) -> None:
        self.width = task.seen_classes

    def predict(self, inputs, task_id=None) -> torch.Tensor:
        self.seen_ids.append(task_id)
        self.label_spaces.append(inputs.class_names)
        return torch.zeros(len(inputs), self.width)


class IdBlind(TaskIdRecorder):
    """The same learner without ``uses_task_id``: the evaluator keeps the id to itself."""

    uses_task_id = False


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
    # The tested task's label space travels with the inputs only when the id is given anyway.
    names = [t.class_names for t in scenario.tasks]
    assert learner.label_spaces == ([names[0], names[0], names[1]] if flag else [None] * 3)


def test_learners_that_ignore_the_id_are_not_told_it(cifar):
    scenario = build_scenario("cifar100", {"increment": 50, "task_incremental": True})
    learner = IdBlind()
    evaluation = Evaluator(scenario, learner, SimpleNamespace(seed=0)).run()
    assert learner.seen_ids == [None, None, None]
    # All-zero scores restricted to task 1's classes 50..99: the argmax is class 50, which
    # is right for task 1's samples of class 50, where class-IL (argmax 0) gets none.
    task1 = scenario.tasks[1].test
    assert evaluation.scores[1, 1] == (task1.labels == 50).sum() > 0
    assert evaluation.scores[1, 0] == (scenario.tasks[0].test.labels == 0).sum()


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
