"""The registry-wide contract, in the spirit of scikit-learn's ``check_estimator``.

Every registered method: constructed from its defaults, round-trips
``hyperparameters()``, runs a tiny two-task stream through the Evaluator,
repeats bit for bit, never receives test targets, and checkpoints and resumes
to the same numbers. Every registered scenario: built on its fixture
(tests/scenario_fixtures.py), every task names a known scorer and its classes'
names, and no test sample is trained on. A new method or scenario is covered
by registering it (and, for a scenario, adding its fixture).
"""

from __future__ import annotations

import inspect
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from clbench.data import Inputs, LabelledData, Samples
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator, check_compatible
from clbench.features import FeatureCache
from clbench.learner import Learner, seed_everything
from clbench.registry import METHODS, SCENARIOS, create_method
from clbench.runner import build_scenario
from clbench.scenario import Scenario, Task, class_incremental
from clbench.scoring import SCORERS
from clbench.training import TrainConfig
from tests.helpers import array_data
from tests.scenario_fixtures import SCENARIO_FIXTURES
from tests.synthetic_vit import SIZE, tiny_context

#: Few epochs keep every method's tiny run to seconds; the contract is about shape, not accuracy.
FAST = {"train": {"epochs": 1, "batch_size": 8}}
#: Secondary loops some methods have, shortened the same way.
FAST_EXTRA = {
    "sema": {"descriptor_epochs": 1},
    "mos": {"align_epochs": 1},
    "slca": {"align_epochs": 1, "samples_per_class": 8},
    # A 256-d projection: the default 10,000-d Gram matrix costs 800 MB and a long solve.
    "ranpac": {"projection_dim": 256},
    # The tiny ViT has 4 blocks; the defaults (ViT-B) prompt blocks up to 4.
    "dualprompt": {"e_layers": (2, 3)},
    "coda_prompt": {"layers": (0, 1, 2, 3)},
    # CoDyRA counts iterations (500 by default, whatever the epochs): 6 still reach the
    # gate thresholding (from half-way) and the merge.
    "dynrank": {"train": {**FAST["train"], "max_steps": 6}},
    "lora": {"train": {**FAST["train"], "max_steps": 6}},
}


def image_stream(task_incremental: bool = False) -> Scenario:
    """4 classes of random 32 px images in 2 tasks, 6 train / 3 test images per class."""
    data: LabelledData = array_data(num_classes=4, train_per_class=6, test_per_class=3, size=SIZE)
    scenario = class_incremental(data, "contract", increment=2)
    return replace(scenario, task_incremental=task_incremental)


def fast_options(name: str) -> dict:
    params = inspect.signature(METHODS.get(name).factory).parameters
    options = dict(FAST) if "train" in params else {}
    return {**options, **FAST_EXTRA.get(name, {})}


def image_methods() -> list[str]:
    return [n for n in METHODS.names() if "image" in METHODS.get(n).factory.modalities]


def run_method(
    name: str, scenario: Scenario, checkpoint_dir=None, on_task_end=None, resume=False, ctx=None
):
    learner = create_method(name, **fast_options(name))
    seed_everything(0)
    ctx = ctx or tiny_context()
    evaluation = Evaluator(scenario, learner, ctx, checkpoint_dir, on_task_end).run(resume=resume)
    return learner, evaluation


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_built_from_defaults_and_round_trips_its_hyperparameters(name):
    learner = create_method(name)
    assert isinstance(learner, Learner)
    params = learner.hyperparameters()
    again = create_method(name, **params).hyperparameters()
    assert again == params
    assert learner.protocols and learner.modalities
    if "train" in params:  # the training options in force, never None
        optional = {f.name for f in fields(TrainConfig) if f.default is None}  # off switches
        assert all(v is not None for k, v in params["train"].items() if k not in optional)


@pytest.mark.parametrize("name", image_methods())
def test_method_runs_a_tiny_stream_deterministically_without_test_targets(name, monkeypatch):
    received: list[object] = []
    original = Evaluator.test

    def spy(self, step, index):
        predict = self.learner.predict

        def guarded(inputs, task_id=None):
            received.append(inputs)
            return predict(inputs, task_id)

        self.learner.predict = guarded
        try:
            return original(self, step, index)
        finally:
            del self.learner.predict

    monkeypatch.setattr(Evaluator, "test", spy)
    _, first = run_method(name, image_stream())
    assert received and all(isinstance(x, Inputs) and not hasattr(x, "labels") for x in received)
    assert np.isfinite(first.scores[np.tril_indices(2)]).all()
    assert np.isnan(first.scores[0, 1])  # the unseen task is not tested in class-IL
    # The repeat gets the backbone lazy (built on first need, as on a run after the one that
    # described it): the same numbers, whether the method needs the network or not.
    _, second = run_method(name, image_stream(), ctx=tiny_context(lazy=True))
    np.testing.assert_array_equal(first.scores, second.scores)


#: Methods that read only frozen features (with these options).
FROZEN_FEATURES = {
    "simplecil": {},
    "ncm": {},
    "knn": {},
    "lda": {},
    "linear": {},
    "ranpac": {"first_session": "frozen"},
    "ear": {},
    "avalanche:naive": {},
}


@pytest.mark.parametrize("name", sorted(FROZEN_FEATURES))
def test_frozen_feature_methods_build_no_network_when_every_feature_is_cached(name):
    cache = FeatureCache(None)
    options = {**fast_options(name), **FROZEN_FEATURES[name]}
    results = []
    for ctx in (tiny_context(cache=cache), tiny_context(lazy=True, cache=cache)):
        seed_everything(0)
        learner = create_method(name, **options)
        results.append(Evaluator(image_stream(), learner, ctx).run())
    assert not ctx.backbone_built  # the second run found every feature in the cache
    np.testing.assert_array_equal(results[0].scores, results[1].scores)


@pytest.mark.parametrize("name", image_methods())
def test_method_checkpoints_and_resumes_to_the_same_numbers(name, tmp_path):
    scenario = image_stream()
    _, full = run_method(name, scenario)

    def stop_after_task_0(step, _):
        if step == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_method(name, scenario, tmp_path, on_task_end=stop_after_task_0)
    learner, resumed = run_method(name, scenario, tmp_path, resume=True)
    # A learner the safe checkpoints cannot hold starts over, to the same numbers.
    assert resumed.resumed_from == (1 if learner.checkpointable else None)
    np.testing.assert_array_equal(resumed.scores, full.scores)


@pytest.mark.parametrize("name", ["simplecil", "ncm", "lda"])
def test_task_incremental_scores_are_at_least_class_incremental(name):
    _, class_il = run_method(name, image_stream())
    _, task_il = run_method(name, image_stream(task_incremental=True))
    assert (task_il.scores[np.tril_indices(2)] >= class_il.scores[np.tril_indices(2)]).all()


class ReadsTargets(Learner):
    """A learner that cheats: it looks up the test labels in predict."""

    def learn(self, task) -> None:
        self.width = task.seen_classes

    def predict(self, inputs, task_id=None) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(inputs.labels), self.width).float()


def test_a_learner_that_reads_test_targets_fails():
    with pytest.raises(AttributeError, match="labels"):
        Evaluator(image_stream(), ReadsTargets(), tiny_context()).run()


class NeedsTaskId(Learner):
    needs_task_id = True

    def learn(self, task) -> None:
        self.width = task.seen_classes

    def predict(self, inputs, task_id=None) -> torch.Tensor:
        assert task_id is not None
        return torch.zeros(len(inputs), self.width)


def test_protocols_a_method_cannot_serve_are_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="needs the task id"):
        check_compatible(NeedsTaskId(), image_stream(), "needs-id")
    check_compatible(NeedsTaskId(), image_stream(task_incremental=True), "needs-id")
    prompts = Samples(
        "text/train", ["a", "b"], [-1, -1], prompts=["2+2=", "3+3="], answers=[("4",), ("6",)]
    )
    task = Task(0, np.array([], dtype=int), 0, prompts, prompts, scorer="exact-match")
    text = Scenario("arithmetic", "instruction", [task], [], [])
    assert text.setting == "instruction" and text.modality == "text"
    with pytest.raises(ConfigError, match="text inputs"):
        check_compatible(create_method("simplecil"), text, "simplecil")


def test_samples_keep_inputs_and_targets_apart():
    samples = Samples(
        "text/test",
        ["q0", "q1"],
        [1, -1],
        prompts=["Is the sky blue?", "Name a colour."],
        choices=[("no", "yes"), ()],
        answers=[("yes",), ("red", "blue")],
    )
    view = samples.inputs("choice-scores")
    assert view.modality == "text" and view.output == "choice-scores"
    assert list(view.prompts) == list(samples.prompts) and view.choices[0] == ("no", "yes")
    for target in ("labels", "answers", "domains"):
        assert not hasattr(view, target)
    assert samples.subset([1]).answers[0] == ("red", "blue")


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_every_scenario_builds_on_its_fixture_and_names_its_scorers(name, tmp_path):
    assert name in SCENARIO_FIXTURES, f"add a fixture for scenario {name!r} to scenario_fixtures.py"
    options = SCENARIO_FIXTURES[name](tmp_path)
    scenario = build_scenario(name, options, data_root=tmp_path)
    assert scenario.num_tasks >= 1 and scenario.setting in {
        "class-incremental",
        "domain-incremental",
        "task-incremental",
        "instruction",
    }
    for task in scenario.tasks:
        assert task.scorer in SCORERS
        assert len(task.class_names) == len(task.classes)
        assert list(task.class_names) == [scenario.class_names[c] for c in task.classes]
    train = {f"{t.train.source}:{k}" for t in scenario.tasks for k in t.train.keys}
    test = {f"{t.test.source}:{k}" for t in scenario.tasks for k in t.test.keys}
    assert not train & test
    assert scenario.split_hash == build_scenario(name, options, data_root=tmp_path).split_hash
