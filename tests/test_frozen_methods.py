"""SimpleCIL, NCM, kNN and the linear baseline on the real emoji data (EfficientNet-Lite0)."""

from __future__ import annotations

import numpy as np
import pytest

from clbench.errors import ConfigError
from clbench.runner import RunSpec, run

pytestmark = pytest.mark.integration
CHANCE = 1 / 87


def run_emoji(method: str, **options):
    scenario_options = options.pop("scenario", {})
    return run(RunSpec(method=method, method_options=options, scenario_options=scenario_options))


@pytest.fixture(scope="module")
def simplecil():
    return run_emoji("simplecil")


def test_simplecil_fills_the_lower_triangle_and_beats_chance(simplecil):
    acc = np.array(simplecil.accuracy_matrix, dtype=float)
    assert acc.shape == (10, 10)
    assert not np.isnan(acc[np.tril_indices(10)]).any()
    assert np.isnan(acc[np.triu_indices(10, 1)]).all()
    assert sum(simplecil.test_counts) == 785
    assert simplecil.metrics["last_acc_sample"] > 10 * CHANCE
    assert simplecil.trainable_parameters == [0] * 10


def test_simplecil_last_accuracy_does_not_depend_on_the_split(simplecil):
    # Prototypes are class means of frozen features: the final classifier is the same
    # however the classes were grouped into tasks (PROTOCOLS.md's regression canary).
    three = run_emoji("simplecil", scenario={"num_tasks": 3})
    assert three.metrics["last_acc_sample"] == pytest.approx(
        simplecil.metrics["last_acc_sample"], abs=1e-9
    )


def test_ncm_and_knn_run_and_beat_chance():
    for method, options in (("ncm", {}), ("knn", {"k": 5})):
        result = run_emoji(method, **options)
        assert result.metrics["last_acc_sample"] > 10 * CHANCE, method
        assert result.config["method"]["name"] == method


def test_knn_with_k1_matches_a_brute_force_nearest_neighbour():
    import torch

    from clbench.runner import prepare

    scenario, learner, ctx = prepare(
        RunSpec(
            method="knn",
            method_options={"k": 1, "vote": "majority"},
            scenario_options={"num_tasks": 1},
        )
    )
    learner.setup(ctx)
    task = scenario.tasks[0]
    learner.learn(task.train_view())
    predicted = learner.predict(task.test).argmax(1)
    train = torch.nn.functional.normalize(ctx.frozen_features(task.train), dim=1)
    test = torch.nn.functional.normalize(ctx.frozen_features(task.test), dim=1)
    brute = torch.from_numpy(task.train.labels)[(test @ train.T).argmax(1)]
    assert torch.equal(predicted, brute)


def test_linear_baseline_forgets_more_than_simplecil(simplecil):
    linear = run_emoji("linear", train={"epochs": 5})
    assert linear.trainable_parameters[-1] == 1280 * 87 + 87
    assert linear.metrics["forgetting_pilot"] > simplecil.metrics["forgetting_pilot"]


def test_same_seed_gives_the_identical_matrix():
    a = run_emoji("linear", train={"epochs": 2}, scenario={"num_tasks": 3})
    b = run_emoji("linear", train={"epochs": 2}, scenario={"num_tasks": 3})
    assert a.correct_matrix == b.correct_matrix
    assert a.split_hash == b.split_hash


def test_interrupted_run_resumes_to_the_same_numbers():
    spec = RunSpec(
        method="linear", method_options={"train": {"epochs": 2}}, scenario_options={"num_tasks": 4}
    )
    full = run(spec)

    def stop_after_task_1(step, _):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(spec, on_task_end=stop_after_task_1)
    resumed = run(spec, resume=True)
    assert resumed.config["resumed_from_task"] == 2
    assert resumed.correct_matrix == full.correct_matrix


def test_unknown_method_option_is_rejected_before_running():
    with pytest.raises(ConfigError, match="has no option"):
        run_emoji("knn", neighbours=3)
