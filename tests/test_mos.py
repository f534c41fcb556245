"""MOS's mechanisms: EMA merge, contrastive term, Gaussian replay, self-refined retrieval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clbench.checkpoint import load_checkpoint, save_checkpoint
from clbench.learner import seed_everything
from clbench.methods.alignment import ClassGaussians, GaussianReplay
from clbench.methods.mos import (
    MOS,
    contrastive_loss,
    ema_merge,
    mean_parameters,
    self_refine,
)
from clbench.methods.peft.adapter import Adapter
from clbench.methods.vit_common import masked_cross_entropy, old_class_count
from tests.synthetic_vit import synthetic_task, tiny_context

SETTINGS = dict(align_epochs=2, samples_per_class=16, train={"epochs": 1, "batch_size": 8})


@pytest.fixture(scope="module")
def two_tasks():
    seed_everything(0)
    learner = MOS(**SETTINGS)
    learner.setup(tiny_context())
    first, first_test = synthetic_task(0, [0, 1, 2], 3, seed=0)
    second, second_test = synthetic_task(1, [3, 4, 5], 6, shift=60, seed=1)
    learner.learn(first)
    adapters_after_first = [copy_params(block.saved[0]) for block in learner.blocks]
    learner.learn(second)
    return learner, adapters_after_first, first_test, second_test, second


def copy_params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_ema_merge_matches_its_formula():
    torch.manual_seed(0)
    current, previous = Adapter(6, 3), [Adapter(6, 3) for _ in range(3)]
    for module in [current, *previous]:
        for p in module.parameters():
            nn.init.normal_(p)
    before = copy_params(current)
    ema_merge(current, mean_parameters(previous), momentum=0.1)
    for name, p in current.named_parameters():
        mean = sum(dict(m.named_parameters())[name] for m in previous) / 3
        assert torch.allclose(p, 0.9 * before[name] + 0.1 * mean, atol=1e-6)


def test_merge_runs_after_every_optimiser_step():
    """With lr 0 the only change to the adapter is the merge: k steps give (1-m)^k c + (1-(1-m)^k) mean."""
    seed_everything(0)
    learner = MOS(
        **{**SETTINGS, "train": {"epochs": 1, "batch_size": 8, "lr": 0.0}, "align_epochs": 1}
    )
    learner.setup(tiny_context())
    learner.learn(synthetic_task(0, [0, 1], 2, seed=0)[0])
    block = learner.blocks[0]
    with torch.no_grad():  # make the task-1 start differ from the mean of the saved adapters
        for p in block.current.parameters():
            p.add_(1.0)
    start, mean = copy_params(block.current), mean_parameters(block.saved)
    task, _ = synthetic_task(1, [2, 3], 4, seed=1)
    learner.learn(task)
    steps = -(-len(task.train) // learner.train.batch_size)  # one epoch of batches
    keep = 0.9**steps
    for name, p in block.saved[1].named_parameters():
        assert torch.allclose(p, keep * start[name] + (1 - keep) * mean[name], atol=1e-5)


def test_masked_old_logits_receive_no_gradient():
    head = nn.Linear(5, 6)
    features, targets = torch.randn(4, 5), torch.tensor([3, 4, 5, 3])
    masked_cross_entropy(head(features), targets, known_classes=3).backward()
    assert (
        torch.count_nonzero(head.weight.grad[:3]) == 0
        and torch.count_nonzero(head.bias.grad[:3]) == 0
    )
    assert torch.count_nonzero(head.weight.grad[3:]) > 0
    assert old_class_count(seen_classes=6, new_classes=3) == 3
    assert (
        old_class_count(seen_classes=6, new_classes=0) == 0
    )  # a new domain of old classes: no mask


def test_contrastive_term_is_cross_entropy_of_scaled_similarities():
    torch.manual_seed(0)
    features, means = torch.randn(4, 3), torch.randn(2, 3)
    rows = torch.cat([means, features])
    expected = F.cross_entropy(rows @ rows.T / 0.8, torch.arange(6))
    assert torch.allclose(contrastive_loss(features, means, 0.8), expected)
    only_batch = F.cross_entropy(features @ features.T / 0.8, torch.arange(4))
    assert torch.allclose(contrastive_loss(features, None, 0.8), only_batch)


def test_gaussian_replay_draws_from_each_class_statistics():
    torch.manual_seed(0)
    features = torch.cat([torch.randn(400, 3) * 0.5 + 4, torch.randn(400, 3) * 2 - 4])
    labels = torch.arange(2).repeat_interleave(400)
    gaussians = ClassGaussians(eps=1e-4)
    gaussians.add(features, labels, [0, 1])
    replay = GaussianReplay(gaussians, per_class=2000, seed=0)
    batches = list(replay)
    assert len(batches) == len(replay) == 2 and all(len(b[0]) == 2000 for b in batches)
    draws, drawn_labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    for c, (mean, std) in enumerate(((4.0, 0.5), (-4.0, 2.0))):
        x = draws[drawn_labels == c]
        assert x.mean(dim=0).tolist() == pytest.approx([mean] * 3, abs=0.15)
        assert x.std(dim=0).tolist() == pytest.approx([std] * 3, rel=0.1)


class TaskOracle(nn.Module):
    """A head whose top class is feature[0] (classes 2k and 2k+1 belong to task k)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.one_hot(features[:, 0].long(), 6).float()


def test_retrieval_stops_when_the_predicted_task_is_stable():
    class_task = torch.tensor([0, 0, 1, 1, 2, 2])
    # features[n, k, 0] = the class task k's adapter makes the head predict for sample n.
    features = torch.zeros(3, 3, 1)
    features[0, :, 0] = torch.tensor([1, 3, 5])  # adapter 0 says task 0: stable at once
    features[1, :, 0] = torch.tensor([2, 2, 0])  # 0 -> 1 -> 1: stable after two scorings
    features[2, :, 0] = torch.tensor([2, 4, 0])  # 0 -> 1 -> 2 -> 0 -> ...: capped at four
    logits, chosen, iterations = self_refine(
        features, TaskOracle(), class_task, torch.zeros(3, dtype=torch.long)
    )
    assert iterations.tolist() == [1, 2, 4]
    assert chosen.tolist() == [0, 1, 0]  # the adapter whose logits are returned
    assert logits.argmax(dim=1).tolist() == [1, 2, 2]


def test_snapshots_stay_frozen_and_prototypes_come_from_the_first_adapter(two_tasks):
    learner, adapters_after_first, _, _, second = two_tasks
    for block, before in zip(learner.blocks, adapters_after_first, strict=True):
        assert len(block.saved) == 2
        assert all(torch.equal(p, before[n]) for n, p in block.saved[0].named_parameters())
        assert not any(p.requires_grad for p in block.parameters())
    labels = torch.from_numpy(second.train.labels)
    first, own = learner.features(0, second.train), learner.features(1, second.train)
    assert learner.class_task.tolist() == [0, 0, 0, 1, 1, 1]
    for c in (3, 4, 5):
        assert torch.allclose(learner.prototypes[c], first[labels == c].mean(dim=0), atol=1e-5)
        assert torch.allclose(learner.gaussians.means[c], own[labels == c].mean(dim=0), atol=1e-5)
    assert not torch.allclose(first, own)  # the two adapters embed differently


def test_predict_combines_scores_and_records_retrieval(two_tasks, tmp_path):
    learner, _, first_test, second_test, _ = two_tasks
    learner.retrieval.clear()
    scores = learner.predict(first_test.inputs())
    assert scores.shape == (len(first_test), 6)
    assert torch.allclose(scores.sum(dim=1), torch.full((len(first_test),), 2.0))  # two softmaxes
    # The truth reaches the retrieval log only through the evaluator's hook.
    learner.on_tested(1, 0, first_test, scores)
    learner.on_tested(1, 1, second_test, learner.predict(second_test.inputs()))
    (step,) = learner.extra_results()["retrieval"]
    assert step["after_task"] == 1 and step["samples"] == len(first_test) + len(second_test)
    assert 0.0 <= step["retrieval_accuracy"] <= 1.0 and sum(step["iterations"]) == step["samples"]
    # Per-task checkpoints hold the learner and must load safely (weights_only).
    path = tmp_path / "task1.pt"
    save_checkpoint({"step": 1, "split_hash": "h", "learner": learner.state_dict()}, path)
    assert set(load_checkpoint(path)["learner"]) == set(learner.state_dict())
    assert (
        learner.trainable_parameters()
        == 2 * sum(p.numel() for p in learner.blocks[0].saved[0].parameters()) * len(learner.blocks)
        + 6 * 49
    )


def test_parameter_groups_scale_the_learning_rate():
    """MOS trains its head at a tenth of the adapters' rate through ``lr_scale`` groups."""
    from clbench.training import TrainConfig, make_optimizer

    body, head, frozen = nn.Linear(2, 2), nn.Linear(2, 3), nn.Linear(2, 2).requires_grad_(False)
    optimizer = make_optimizer(
        [
            {"params": [*body.parameters(), *frozen.parameters()]},
            {"params": list(head.parameters()), "lr_scale": 0.1},
        ],
        TrainConfig(lr=0.05),
    )
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.005])
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2]  # frozen ones dropped


def test_same_seed_gives_the_same_predictions(two_tasks):
    learner, _, first_test, _, _ = two_tasks
    seed_everything(0)
    again = MOS(**SETTINGS)
    again.setup(tiny_context())
    again.learn(synthetic_task(0, [0, 1, 2], 3, seed=0)[0])
    again.learn(synthetic_task(1, [3, 4, 5], 6, shift=60, seed=1)[0])
    assert torch.equal(again.predict(first_test), learner.predict(first_test))


def test_a_task_of_known_classes_in_a_new_domain_adds_no_classes():
    seed_everything(0)
    learner = MOS(**SETTINGS)
    learner.setup(tiny_context())
    learner.learn(synthetic_task(0, [0, 1], 2, seed=0)[0])
    second, test = synthetic_task(1, [0, 1], 2, shift=80, seed=1)  # same labels, shifted pixels
    learner.learn(second)
    assert learner.class_task.tolist() == [0, 0] and len(learner.gaussians) == 2
    assert learner.predict(test).shape == (len(test), 2)
    assert all(len(block.saved) == 2 for block in learner.blocks)


def test_alignment_weight_decay_follows_the_training_weight_decay():
    # PILOT's classifer_align puts args["weight_decay"] in its parameter group (models/mos.py:252),
    # which overrides the SGD constructor's 5e-4: the ImageNet-R config aligns at 0.005.
    assert MOS().align_weight_decay == MOS().train.weight_decay == 0.005
    assert MOS(train={"weight_decay": 0.02}).align_weight_decay == 0.02
    assert MOS(align_weight_decay=0.0).align_weight_decay == 0.0
