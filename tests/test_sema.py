"""SEMA's mechanisms on a small random ViT: z-score test, expansion, router, freezing."""

from __future__ import annotations

import io

import pytest
import torch

from clbench.errors import ConfigError
from clbench.learner import seed_everything
from clbench.methods.peft.adapter import Adapter
from clbench.methods.sema import SEMA, AdapterMixture, LossBuffer, expansion_layers
from tests.synthetic_vit import synthetic_task, tiny_context

SETTINGS = dict(
    descriptor_epochs=10,
    detect_batch_size=32,
    expand_layers=2,
    train={"epochs": 1, "batch_size": 8},
)


def run_two_tasks(shift: int) -> tuple[SEMA, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Learn task 0, then task 1 (new classes) whose pixels are shifted by ``shift``.

    Returns the learner and the mixtures' parameters after each task.
    """
    seed_everything(0)
    learner = SEMA(**SETTINGS)
    learner.setup(tiny_context())
    first, _ = synthetic_task(0, list(range(6)), 6, seed=0)
    second, _ = synthetic_task(1, list(range(6, 12)), 12, shift=shift, seed=1)
    learner.learn(first)
    after_first = mixture_state(learner)
    learner.learn(second)
    return learner, after_first, mixture_state(learner)


def mixture_state(learner: SEMA) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{name}": p.detach().clone()
        for i, m in learner.mixtures.items()
        for name, p in m.named_parameters()
    }


@pytest.fixture(scope="module")
def same_distribution():
    return run_two_tasks(shift=0)


@pytest.fixture(scope="module")
def shifted_distribution():
    return run_two_tasks(shift=120)


def test_loss_buffer_keeps_the_last_losses_and_scores_against_them():
    buffer = LossBuffer(size=4)
    assert torch.equal(buffer.z_scores(torch.tensor([5.0])), torch.zeros(1))  # no evidence yet
    buffer.push(torch.tensor([9.0, 1.0, 2.0]))
    buffer.push(torch.tensor([3.0, 4.0]))
    assert buffer.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    mean, std = 2.5, torch.tensor([1.0, 2.0, 3.0, 4.0]).std().item()
    z = buffer.z_scores(torch.tensor([2.5, 0.0, 7.0]))
    assert z.tolist() == pytest.approx([0.0, 2.5 / std, 4.5 / std])
    assert mean == pytest.approx(buffer.values.mean().item())


def test_expansion_score_is_min_over_adapters_of_batch_mean_abs_z():
    torch.manual_seed(0)
    mixture = AdapterMixture(8, lambda: Adapter(8, 4), descriptor_dim=3)
    mixture.add_adapter()
    for buffer, center in zip(mixture.buffers, (0.0, 10.0), strict=True):
        buffer.push(center + torch.arange(6.0))
    tokens = torch.randn(5, 7, 8)
    expected = min(
        ((d.losses(tokens) - b.values.mean()) / b.values.std()).abs().mean().item()
        for d, b in zip(mixture.descriptors, mixture.buffers, strict=True)
    )
    assert mixture.expansion_score(tokens) == pytest.approx(expected, rel=1e-5)


def test_router_mixes_adapters_by_a_softmax_over_their_columns():
    torch.manual_seed(0)
    mixture = AdapterMixture(8, lambda: Adapter(8, 4, scale=1.0, dropout=0.0), descriptor_dim=3)
    mixture.add_adapter()
    for adapter in mixture.adapters:  # non-zero outputs, so the mixture weights matter
        torch.nn.init.normal_(adapter.up.weight)
    tokens = torch.randn(2, 5, 8)
    logits = torch.cat([column(tokens.mean(dim=1)) for column in mixture.router], dim=1)
    weights = logits.softmax(dim=1)
    expected = sum(weights[:, k, None, None] * mixture.adapters[k](tokens) for k in range(2))
    assert torch.allclose(mixture(tokens), expected, atol=1e-6)


def test_expansion_layers_default_to_the_last_blocks_and_reject_bad_indices():
    assert expansion_layers(12, 3) == [9, 10, 11]
    assert expansion_layers(11, 3) == [8, 9, 10]  # DINOv2 truncated after block 11
    assert expansion_layers(12, [11, 9]) == [9, 11]
    with pytest.raises(ConfigError):
        expansion_layers(12, 13)
    with pytest.raises(ConfigError):
        expansion_layers(12, [12])


def test_same_distribution_does_not_expand_and_trains_only_the_head(same_distribution):
    learner, after_first, after_second = same_distribution
    results = learner.extra_results()
    assert results["expansions"] == []
    assert results["adapters_per_layer"] == [{"2": 1, "3": 1}, {"2": 1, "3": 1}]
    decision = results["expansion_decisions"][-1]
    assert decision["task"] == 1 and decision["expanded_layer"] is None
    assert max(decision["highest_z"].values()) < learner.expansion_threshold
    assert all(
        torch.equal(after_first[k], after_second[k]) for k in after_first
    )  # adapters untouched
    assert learner.head.out_features == 12


def test_shifted_distribution_expands_once_per_layer_and_logs_it(shifted_distribution):
    learner, _, _ = shifted_distribution
    results = learner.extra_results()
    expansions = results["expansions"]
    assert expansions, "a shifted input distribution must trigger an expansion"
    layers = [e["layer"] for e in expansions]
    assert len(layers) == len(set(layers))  # at most one expansion per layer per task
    assert all(e["task"] == 1 and e["z"] > learner.expansion_threshold for e in expansions)
    assert set(layers) <= set(results["expandable_layers"]) == {2, 3}
    assert results["expansion_decisions"][-1]["expanded_layer"] is None  # the last rescan is clean
    counts = results["adapters_per_layer"][-1]
    assert all(counts[str(layer)] == 2 for layer in layers)


def test_old_adapters_router_columns_and_descriptors_stay_frozen(shifted_distribution):
    learner, after_first, after_second = shifted_distribution
    unchanged = [k for k in after_first if torch.equal(after_first[k], after_second[k])]
    assert unchanged == list(after_first)  # every task-0 parameter is bit-identical after task 1
    new = set(after_second) - set(after_first)
    assert any(".adapters.1." in k for k in new) and any(".router.1." in k for k in new)
    assert not any(p.requires_grad for m in learner.mixtures.values() for p in m.parameters())


def test_expanded_learner_predicts_all_seen_classes_and_checkpoints(shifted_distribution):
    learner, _, _ = shifted_distribution
    _, test = synthetic_task(1, list(range(6, 12)), 12, shift=120, seed=1)
    scores = learner.predict(test)
    assert scores.shape == (len(test), 12)
    assert learner.trainable_parameters() > 0
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)  # per-task checkpoints pickle the whole learner
    restored = SEMA()
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    restored.ctx = learner.ctx
    assert torch.equal(restored.predict(test), scores)


def test_same_seed_gives_the_same_expansions_and_predictions(shifted_distribution):
    learner, _, _ = shifted_distribution
    again, _, _ = run_two_tasks(shift=120)
    _, test = synthetic_task(1, list(range(6, 12)), 12, shift=120, seed=1)
    assert again.extra_results() == learner.extra_results()
    assert torch.equal(again.predict(test), learner.predict(test))
