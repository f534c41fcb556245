"""SEMA and MOS end to end on the real offline data with the DINOv2 ViT-S/14 (small CI size).

emoji-cil in 3 tasks of 29 classes, 56 px images (4x4 patches of 14 px),
one epoch: the point is that the whole pipeline runs on the real network and
stores what each method must report, not the accuracy a full run reaches.
"""

from __future__ import annotations

import math

import pytest

from clbench.methods.peft.adapter import Adapter
from clbench.runner import RunSpec, run

pytestmark = pytest.mark.integration

CI_SIZE = dict(
    scenario="emoji-cil", backbone="dinov2-vits14", image_size=56, scenario_options={"num_tasks": 3}
)


def run_method(method: str, scenario: str = "emoji-cil", **options):
    return run(RunSpec(**{**CI_SIZE, "scenario": scenario}, method=method, method_options=options))


def above_chance_on_first_task(result) -> bool:
    """A sanity floor, not an expected number: one epoch at the published rates learns little."""
    return result.accuracy_matrix[0][0] > 1.0 / len(result.task_classes[0])


def test_sema_on_emoji_cil_with_dinov2():
    result = run_method("sema", train={"epochs": 1}, descriptor_epochs=1)
    assert all(
        v is not None for row_i, row in enumerate(result.correct_matrix) for v in row[: row_i + 1]
    )
    extra = result.extra
    assert extra["expandable_layers"] == [
        8,
        9,
        10,
    ]  # the last 3 of the 11 blocks kept for block-11 features
    assert len(extra["adapters_per_layer"]) == 3
    assert {d["task"] for d in extra["expansion_decisions"]} == {
        1,
        2,
    }  # every later task was scanned
    for e in extra["expansions"]:
        assert e["z"] > 2.0 and str(e["layer"]) in extra["adapters_per_layer"][e["task"]]
    assert result.trainable_parameters[0] > 0
    assert result.config["method"]["expansion_threshold"] == 2.0
    assert above_chance_on_first_task(result)


def test_mos_on_emoji_cil_with_dinov2():
    result = run_method("mos", train={"epochs": 1}, align_epochs=2)
    retrieval = result.extra["retrieval"]
    assert [r["after_task"] for r in retrieval] == [0, 1, 2]
    assert retrieval[0]["retrieval_accuracy"] == 1.0  # one adapter: retrieval cannot miss
    assert all(0.0 <= r["retrieval_accuracy"] <= 1.0 for r in retrieval)
    # Each task stores one adapter per block (11 blocks) and adds 29 rows to the 384-d head.
    per_task = 11 * Adapter.num_parameters(384, 16) + 29 * 385
    assert result.trainable_parameters == [per_task, 2 * per_task, 3 * per_task]
    assert above_chance_on_first_task(result)


@pytest.mark.parametrize("method", ["sema", "mos"])
def test_domain_incremental_emoji_with_dinov2(method):
    """Google then Twitter styles over one label set (the 14 subcategories with >= 30 emoji)."""
    options = (
        {"train": {"epochs": 1}, "descriptor_epochs": 1}
        if method == "sema"
        else {"train": {"epochs": 1}, "align_epochs": 2}
    )
    result = run(
        RunSpec(
            scenario="emoji-dil",
            backbone="dinov2-vits14",
            image_size=56,
            method=method,
            method_options=options,
            scenario_options={"min_per_class": 30},
        )
    )
    assert result.scenario_kind == "domain-incremental"
    assert not math.isnan(result.accuracy_matrix[-1][-1])
    assert above_chance_on_first_task(result)
    if method == "mos":  # every class was met in task 0: retrieval can only name adapter 0
        assert all(r["retrieval_accuracy"] == 1.0 for r in result.extra["retrieval"])
