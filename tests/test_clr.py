"""CLR: identity at initialisation, closed-form parameter counts, earlier tasks untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import clbench.backbones  # noqa: F401  (makes torchvision, hence timm, importable on CPU torch)
from clbench.context import RunContext
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.features import FeatureCache
from clbench.methods.clr import CLR, step_milestones
from clbench.methods.peft import reprogram
from clbench.scenario import class_incremental
from clbench.training import TrainConfig
from tests.test_first_session import tiny_cnn_backbone, toy_data


def timm_cnn(name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=0).eval()


def randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that copying them per task is actually tested."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
@pytest.mark.parametrize("variant", ["reduced", "full"])
def test_reprogrammed_network_is_unchanged_at_initialisation(name, variant):
    model = timm_cnn(name)
    randomise_batchnorm(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        reprogram.attach_reprogramming(model, variant)
        reprogram.add_task(model)
        after = model.eval()(x)
    assert before.abs().max() > 0
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # and it is not the identity once a kernel moves
    with torch.no_grad():
        next(reprogram.task_slots(model)[0].slots[0].parameters()).mul_(0.5)
        assert not torch.allclose(model(x), before, atol=1e-4)


def test_parameter_count_matches_closed_form_and_the_reference_resnet18():
    model = timm_cnn("resnet18")
    closed = reprogram.closed_form_parameters(model, "reduced")
    # The reference's published ResNet-18 figures (PROTOCOLS.md): 35,136 + 9,600 BatchNorm.
    assert closed == {"reprogram": 35_136, "batchnorm": 9_600}
    reprogram.attach_reprogramming(model, "reduced")
    new = reprogram.add_task(model)
    assert sum(p.numel() for p in new) == 35_136 + 9_600
    assert reprogram.slot_parameters(model, 0) == closed
    full = timm_cnn("resnet18")
    extra_1x1 = sum(
        9 * m.out_channels
        for m in full.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    )
    assert extra_1x1 > 0
    assert reprogram.closed_form_parameters(full, "full")["reprogram"] == 35_136 + extra_1x1


def test_step_schedule_scales_the_reference():
    assert step_milestones(60) == (20, 40)
    assert step_milestones(3) == (1, 2)
    assert step_milestones(1) == ()
    assert step_milestones(2) == ()


@pytest.mark.parametrize("epochs", [4, 5, 8, 9, 11, 60])
def test_step_schedule_is_the_references_steplr(epochs):
    """The rates per epoch equal torch's StepLR(epochs // 3, 0.1), the reference's scheduler
    (main.py: ``step_size = epochs//3``, one ``scheduler.step()`` per epoch)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1e-3)
    reference = torch.optim.lr_scheduler.StepLR(optimizer, epochs // 3, 0.1)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    ours = [1e-3 * 0.1 ** sum(e >= m for m in step_milestones(epochs)) for e in range(epochs)]
    assert ours == pytest.approx(rates, rel=1e-9)


def run_clr(task_incremental: bool, epochs: int = 1):
    scenario = class_incremental(toy_data(), "toy", num_tasks=3)
    object.__setattr__(scenario, "task_incremental", task_incremental)
    learner = CLR(train=TrainConfig(epochs=epochs, lr=1e-2, optimizer="adam", batch_size=8))
    ctx = RunContext(backbone=tiny_cnn_backbone(), cache=FeatureCache(None), seed=7)
    snapshots = []
    original_learn = learner.learn

    def learn(task):
        original_learn(task)
        snapshots.append(task_zero_state(learner))

    learner.learn = learn
    evaluation = Evaluator(scenario, learner, ctx).run()
    return learner, evaluation, snapshots, scenario


def task_zero_state(learner: CLR) -> dict[str, torch.Tensor]:
    state = {f"head.{k}": v.clone() for k, v in learner.heads[0].state_dict().items()}
    for i, wrapper in enumerate(reprogram.task_slots(learner.backbone.model)):
        for k, v in wrapper.slots[0].state_dict().items():
            state[f"{i}.{k}"] = v.clone()
    return state


def test_earlier_tasks_parameters_are_bit_identical_after_later_tasks():
    learner, evaluation, snapshots, scenario = run_clr(task_incremental=True)
    assert len(snapshots) == 3
    first, last = snapshots[0], task_zero_state(learner)
    assert first.keys() == last.keys() and len(first) > 10
    for k in first:
        assert torch.equal(first[k], last[k]), k  # weights and BatchNorm statistics alike
    # task 1 and 2 did train their own slots (they differ from a fresh Dirac kernel)
    wrapper = reprogram.task_slots(learner.backbone.model)[0]
    fresh = reprogram.reprogram_kernel(wrapper.conv.out_channels).weight
    assert not torch.equal(wrapper.slots[2].weight, fresh)
    # task-incremental: task 0's accuracy is the same after every later task
    correct = evaluation.scores
    assert correct[0, 0] == correct[1, 0] == correct[2, 0]


def test_parameters_per_task_are_stored_beside_the_closed_form():
    learner, evaluation, _, scenario = run_clr(task_incremental=False)
    records = learner.extra_results()["parameters_per_task"]
    assert len(records) == 3
    for record, task in zip(records, scenario.tasks, strict=True):
        assert record["reprogram"] == record["closed_form"]["reprogram"] > 0
        assert record["batchnorm"] == record["closed_form"]["batchnorm"] > 0
        assert record["head"] == learner.backbone.feature_dim * len(task.classes) + len(
            task.classes
        )
        assert 0 < record["fraction_reprogram"] < record["fraction_reprogram_batchnorm"] < 0.05
    assert evaluation.trainable_parameters[-1] == sum(
        r["reprogram"] + r["batchnorm"] + r["head"] for r in records
    )


def test_class_incremental_infers_the_most_confident_task():
    learner, evaluation, _, scenario = run_clr(task_incremental=False)
    test = scenario.tasks[1].test
    scores = learner.predict(test)
    assert scores.shape == (len(test), scenario.tasks[-1].seen_classes)
    chosen = learner.last_choice
    for row, t in zip(scores, chosen, strict=True):  # only the chosen head's classes score
        kept = torch.from_numpy(learner.head_classes[t])
        assert torch.all(row[kept] > -1e8) and (row > -1e8).sum() == len(kept)
    learner.on_tested(2, 1, test, scores)
    record = learner.extra_results()["task_inference_log"][-1]
    assert record["task_inference_accuracy"] == pytest.approx(float(np.mean(chosen == 1)))
    # with a task id, only that task's columns are scored
    scores = learner.predict(test, task_id=1)
    assert set(torch.nonzero(scores[0] > -1e8).flatten().tolist()) == set(
        scenario.tasks[1].classes.tolist()
    )


def test_clr_rejects_an_unknown_variant():
    with pytest.raises(ConfigError, match="reduced"):
        CLR(variant="half")
