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
