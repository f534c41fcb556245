"""ADAM/APER, FSA, finetune and joint on the real emoji data with both real backbones (small size)."""

from __future__ import annotations

import math

import pytest

from clbench.features import FeatureCache
from clbench.runner import RunSpec, run

pytestmark = pytest.mark.integration

#: 7 subcategories with at least 40 emoji (198 train / 194 test images), tasks of 3, 2, 2 classes, 56 px.
SMALL = {"init_cls": 3, "increment": 2, "min_per_class": 40}
CHANCE = 1 / 7

CASES = [
    ("fsa", "efficientnet-lite0", {"train": {"epochs": 1}}),
    ("fsa", "dinov2-vits14", {"train": {"epochs": 1}, "adapt": "film"}),
    ("aper", "dinov2-vits14", {"train": {"epochs": 1}, "peft": "adapter"}),
    ("aper", "efficientnet-lite0", {"train": {"epochs": 1}, "peft": "ssf"}),
    ("finetune", "efficientnet-lite0", {"train": {"epochs": 1}}),
    ("joint", "efficientnet-lite0", {"train": {"epochs": 1}}),
]


@pytest.mark.parametrize(
    ("method", "backbone", "options"),
    CASES,
    ids=[f"{m}-{b}-{o.get('adapt') or o.get('peft') or 'default'}" for m, b, o in CASES],
)
def test_runs_on_real_emoji(method, backbone, options, tmp_path):
    spec = RunSpec(
        scenario="emoji-cil",
        method=method,
        backbone=backbone,
        image_size=56,
        method_options=options,
        scenario_options=SMALL,
    )
    result = run(spec, cache=FeatureCache(tmp_path / "features"))
    assert len(result.accuracy_matrix) == 3
    assert all(
        math.isfinite(v)
        for v in (result.metrics["avg_acc_sample"], result.metrics["last_acc_sample"])
    )
    if method == "finetune":  # the lower bound: old tasks are forgotten, the newest is learned
        assert result.metrics["forgetting_pilot"] > 0.2
        assert result.accuracy_matrix[-1][-1] > CHANCE
    else:  # better than chance over the 7 classes after the last task
        assert result.metrics["last_acc_sample"] > CHANCE
    assert min(result.trainable_parameters) > 0
    assert result.config["method"]["name"] == method
