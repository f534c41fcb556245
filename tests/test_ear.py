"""EAR: the HDC detector, the zero-shot proxy, growth, routing and determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clbench.context import RunContext
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.features import FeatureCache
from clbench.methods import zeronas
from clbench.methods.ear import EAR
from clbench.methods.hdc import ClassMemory, HyperProjector, auroc, bipolar
from clbench.scenario import TrainTask, class_incremental
from clbench.training import TrainConfig
from tests.test_first_session import tiny_cnn_backbone, toy_data


def test_auroc_counts_pairs_and_ties():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30), rng.integers(0, 5, 40)  # many ties
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(pos, neg) == pytest.approx(pairs)
    with pytest.raises(ValueError):
        auroc([], [1.0])


def test_leave_one_out_score_equals_a_memory_built_without_the_sample():
    gen = torch.Generator().manual_seed(0)
    hv = bipolar(torch.randn(9, 64, generator=gen))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    memory = ClassMemory(64)
    memory.add(hv, labels)
    loo = memory.leave_one_out_score(hv, labels)
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        rebuilt = ClassMemory(64)
        rebuilt.add(hv[torch.from_numpy(keep)], labels[keep])
        assert loo[i] == pytest.approx(float(rebuilt.score(hv[i : i + 1])[0]))
    assert torch.all(loo <= memory.score(hv))  # a sample inside its bundle scores higher


def test_projection_is_fixed_by_the_seed_and_preserves_similarity():
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    a, b = HyperProjector(32, 4096, seed=3), HyperProjector(32, 4096, seed=3)
    assert torch.equal(a.encode(x), b.encode(x))
    assert set(a.encode(x).unique().tolist()) == {-1.0, 1.0}
    near = a.encode(x + 0.01 * torch.randn(5, 32, generator=torch.Generator().manual_seed(2)))
    far = a.encode(torch.randn(5, 32, generator=torch.Generator().manual_seed(4)))
    code = a.encode(x)
    assert ((code * near).mean(1) > (code * far).mean(1) + 0.5).all()


def test_candidates_count_their_parameters_and_start_as_the_identity():
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(0))
    for cand in zeronas.search_space((8, 16), (1, 2)):
        adaptor = cand.build(40, seed=0)
        assert sum(p.numel() for p in adaptor.parameters()) == cand.num_parameters(40)
        assert torch.equal(adaptor(x), x)


def test_proxy_ranking_is_deterministic_and_respects_the_budget():
    feats = torch.randn(200, 48, generator=torch.Generator().manual_seed(0)).relu()
    cands = zeronas.search_space((16, 32, 64), (1, 2))
    n = zeronas.proxy_batch_size(cands, 64)
    assert n == 16  # the smallest candidate has 16 ReLUs
    budget = cands[1].num_parameters(48)  # mlp-32 fits, mlp-64 does not
    first = zeronas.rank_candidates(cands, feats[:n], budget, seed=5)
    again = zeronas.rank_candidates(cands, feats[:n], budget, seed=5)
    assert json.dumps(first) == json.dumps(again)
    fitting = [r for r in first if r["within_budget"]]
    assert {r["name"] for r in fitting} == {"mlp-16", "mlp-32", "mlp-16x16"}
    assert first[: len(fitting)] == fitting  # over-budget ones come last, still scored
    assert all(np.isfinite(r["proxy"]) for r in first)
    scores = [r["proxy"] for r in fitting]
    assert scores == sorted(scores, reverse=True)
    # more inputs than 2 x units: NASWOT's kernel is singular whatever the data
    narrow = zeronas.Candidate((4,)).build(48, seed=0)
    assert zeronas.naswot_score(narrow, feats[:20]) == float("-inf")


def test_kendall_tau():
    assert zeronas.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert zeronas.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert zeronas.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # tau-b with ties, checked by hand: pairs (1,2) tie in x
    assert zeronas.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(2 * 3))
    assert zeronas.kendall_tau([float("-inf"), float("-inf"), 1.0], [1, 2, 3]) == pytest.approx(
        2 / np.sqrt(2 * 3)
    )


def run_ear(seed: int = 7):
    scenario = class_incremental(toy_data(), "toy", num_tasks=3)
    learner = EAR(train=TrainConfig(epochs=3, lr=1e-2, optimizer="adam", batch_size=8))
    ctx = RunContext(backbone=tiny_cnn_backbone(), cache=FeatureCache(None), seed=seed)
    evaluation = Evaluator(scenario, learner, ctx).run()
    return learner, evaluation, scenario


def test_growth_routing_and_decisions_are_logged_and_deterministic():
    learner, evaluation, scenario = run_ear()
    extra = learner.extra_results()
    decisions = extra["ood_decisions"]
    assert [d["task"] for d in decisions] == [0, 1, 2]
    assert decisions[0]["decision"] == "grow"
    for d in decisions[1:]:
        assert d["decision"] in ("grow", "reuse")
        assert 0 <= d["ood_auroc"] <= 1 and len(d["pass_fraction"]) == len(d["thresholds"])
    grown = [d for d in decisions if d["decision"] == "grow"]
    assert len(extra["adaptor_search"]) == len(grown) == len(learner.branches)
    for search in extra["adaptor_search"]:
        assert len(search["candidates"]) == 8
        assert search["chosen"] == search["candidates"][0]["name"]
        assert search["chosen_parameters"] <= search["budget"]
    assert evaluation.trainable_parameters[-1] == sum(d["parameters_added"] for d in decisions)
    assert extra["adaptor_of_task"] == [d["adaptor"] for d in decisions]
    # routing accuracy from the evaluator's truth, one record per tested (step, task)
    learner.predict(scenario.tasks[1].test)
    routes = learner.last_routes.copy()
    learner.on_tested(2, 1, scenario.tasks[1].test, None)
    record = learner.routing[-1]
    assert record["routing_accuracy"] == pytest.approx(
        float(np.mean(routes == extra["adaptor_of_task"][1]))
    )
    again, evaluation2, _ = run_ear()
    assert np.array_equal(evaluation.scores, evaluation2.scores, equal_nan=True)
    assert json.dumps(extra["ood_decisions"]) == json.dumps(again.extra_results()["ood_decisions"])
    assert json.dumps(extra["adaptor_search"]) == json.dumps(
        again.extra_results()["adaptor_search"]
    )


def test_ear_rejects_bad_settings_and_an_impossible_budget():
    with pytest.raises(ConfigError, match="quantile"):
        EAR(quantile=1.5)
    learner = EAR(budget=1e-6)
    learner.setup(RunContext(backbone=tiny_cnn_backbone(), cache=FeatureCache(None)))
    task = class_incremental(toy_data(), "toy", num_tasks=3).tasks[0].train_view()
    with pytest.raises(ConfigError, match="budget"):
        learner.learn(task)


@pytest.mark.integration
def test_detector_separates_emoji_from_fashion_mnist(tmp_path):
    """A real shift: Google emoji (7 subcategories) then Fashion-MNIST, EfficientNet-Lite0 at 56 px."""
    from clbench.backbones import build_backbone
    from clbench.runner import build_scenario

    emoji = build_scenario("emoji-cil", {"num_tasks": 1, "min_per_class": 40}).tasks[0]
    fashion = build_scenario("fashion-mnist", {"train_per_class": 20, "test_per_class": 20})
    ctx = RunContext(
        backbone=build_backbone("efficientnet-lite0", image_size=56),
        cache=FeatureCache(tmp_path / "features"),
    )
    learner = EAR(train=TrainConfig(epochs=2, optimizer="adam", lr=1e-3))
    learner.setup(ctx)
    learner.learn(emoji.train_view())
    # measured AUROC: held-out emoji (in distribution) against Fashion-MNIST test images
    encode = learner.projector.encode
    memory = learner.branches[0].memory
    inside = memory.score(encode(ctx.frozen_features(emoji.test)))
    outside = memory.score(encode(torch.cat([ctx.frozen_features(t.test) for t in fashion.tasks])))
    assert auroc(inside, outside) > 0.85
    # the learner itself grows for Fashion-MNIST, and reuses its adaptor for more emoji
    shifted = fashion.tasks[0].train.relabel(np.arange(10) + emoji.seen_classes)
    learner.learn(TrainTask(1, np.arange(7, 17), 17, shifted))
    learner.learn(TrainTask(2, emoji.classes, 17, emoji.test))
    first, second = learner.decisions[1], learner.decisions[2]
    assert first["decision"] == "grow" and first["ood_auroc"] > 0.85
    assert second["decision"] == "reuse" and second["adaptor"] == 0
    assert second["ood_auroc"] < first["ood_auroc"]
