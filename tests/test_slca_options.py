"""SLCA's optional reference behaviours: the old-class mean decay and the alignment schedule."""

import pytest
import torch

from clbench.errors import ConfigError
from clbench.methods.alignment import ClassGaussians
from clbench.registry import create_method


def _slca(**options):
    slca = create_method("slca", **options)
    slca.gaussians = ClassGaussians()
    slca.gaussians.means = torch.ones(6, 3)
    slca.gaussians.factors = torch.eye(3).expand(6, 3, 3).clone()
    slca.task_sizes = [2, 2, 2]
    return slca


def test_old_mean_decay_scales_each_task_mean():
    scaled = _slca(old_mean_decay=True).sampled_gaussians()
    # at task T = 2 (three tasks): 0.9 + 0.1 (t + 1) / 3 for the classes of task t
    expected = torch.tensor([0.9 + 0.1 / 3, 0.9 + 0.2 / 3, 1.0]).repeat_interleave(2)
    assert torch.allclose(scaled.means[:, 0], expected)
    assert torch.equal(scaled.factors, torch.eye(3).expand(6, 3, 3))


def test_default_keeps_means_and_training_schedule():
    slca = _slca()
    assert slca.sampled_gaussians() is slca.gaussians
    assert slca.align_config().schedule == slca.train.schedule
    assert _slca(align_schedule="cosine").align_config().schedule == "cosine"


def test_bad_align_schedule_is_refused_at_construction():
    with pytest.raises(ConfigError, match="schedule"):
        create_method("slca", align_schedule="linear")


@pytest.mark.parametrize("reset", [True, False])
def test_reset_alignment_restores_the_stage_one_head_before_the_next_task(reset, monkeypatch):
    # PILOT backs the head up before the alignment and restores it after evaluating the task
    # (models/slca.py:54,82): the next task trains from the stage-1 rows, not the aligned ones.
    import clbench.methods.slca as slca_module
    from tests.synthetic_vit import synthetic_task, tiny_context

    torch.manual_seed(0)
    learner = create_method(
        "slca",
        reset_alignment=reset,
        align_epochs=1,
        samples_per_class=8,
        train={"epochs": 1, "batch_size": 8},
    )
    learner.setup(tiny_context())
    starts: list[torch.Tensor] = []
    own_fit = slca_module.fit

    def recording_fit(*args, **kwargs):
        starts.append(learner.head.weight.detach().clone())
        return own_fit(*args, **kwargs)

    monkeypatch.setattr(slca_module, "fit", recording_fit)
    learner.learn(synthetic_task(0, [0, 1], 2, per_class=4)[0])
    learner.learn(synthetic_task(1, [2, 3], 4, per_class=4, seed=1)[0])
    aligned = learner.head.weight.detach().clone()
    stage_one = learner.unaligned_head["weight"].clone() if reset else None
    learner.learn(synthetic_task(2, [4, 5], 6, per_class=4, seed=2)[0])
    at_third = starts[2][:4]  # the four old rows as the third task's training starts
    if reset:
        assert not torch.allclose(stage_one, aligned)  # the alignment moved the head ...
        assert torch.equal(at_third, stage_one)  # ... and the third task starts from before it
    else:
        assert torch.equal(at_third, aligned)
