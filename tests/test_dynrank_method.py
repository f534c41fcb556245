"""dynrank / lora as clbench methods: on a tiny ViT (class- and domain-incremental) and on
a tiny random CLIP through the MTIL protocol, run by the real Evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clbench.backbones.openclip import openclip_backbone
from clbench.context import RunContext
from clbench.data import LabelledData
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.features import FeatureCache
from clbench.methods.dynrank import DynRank, SequentialLoRA, class_to_image_loss
from clbench.methods.peft import count_parameters
from clbench.methods.peft.dynrank import GatedLoRA
from clbench.scenario import Scenario, Task
from clbench.scenarios.mtil import multi_domain
from tests.synthetic_vit import synthetic_task, tiny_context

FAST = {"max_steps": 8, "batch_size": 8, "lr": 5e-3}


def _scenario(kind: str) -> Scenario:
    if kind == "class-incremental":
        specs = [([0, 1], 2, 0), ([2, 3], 4, 0)]
    else:  # the same classes in a shifted domain
        specs = [([0, 1, 2], 3, 0), ([0, 1, 2], 3, 40)]
    tasks = []
    for i, (classes, seen, shift) in enumerate(specs):
        train, test = synthetic_task(i, classes, seen, shift=shift, seed=i)
        tasks.append(Task(i, np.array(classes), seen, train.train, test, domain=f"d{i}"))
    n = max(t.seen_classes for t in tasks)
    return Scenario(
        "synthetic", kind, tasks, [f"c{c}" for c in range(n)], list(range(n)),
        evaluate_unseen=kind == "domain-incremental",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["class-incremental", "domain-incremental"])
def test_dynrank_on_a_vit_merges_after_every_task(kind):
    ctx = tiny_context(depth=2)
    base = count_parameters(ctx.backbone, trainable_only=False)
    learner = DynRank(rank=4, max_kappa=0.05, train=FAST)
    result = Evaluator(_scenario(kind), learner, ctx).run()
    assert np.isfinite(result.scores[-1]).all()
    # merged: no LoRA left, the network has exactly the pretrained parameter count
    assert not any(isinstance(m, GatedLoRA) for m in learner.net.modules())
    assert count_parameters(learner.net, trainable_only=False) == base
    assert len(learner.ranks) == 2
    for kept in learner.ranks:
        assert "blocks.0.attn.qkv" in kept and len(kept["blocks.0.attn.qkv"]) == 3
        assert all(0 <= r <= 4 for ranks in kept.values() for r in ranks)
    # kappa 0.05 over 4 thresholded steps prunes some of the N(0, 1) gates
    assert sum(map(sum, learner.ranks[0].values())) < 4 * sum(map(len, learner.ranks[0].values()))
    extra = learner.extra_results()
    assert extra["state_bytes"] > 0 and len(extra["train_logs"]) == 2
    assert learner.head.shape[0] == (4 if kind == "class-incremental" else 3)


def test_seqlora_keeps_every_rank_and_trains_the_same_layers():
    ctx = tiny_context(depth=2)
    learner = SequentialLoRA(rank=3, train=FAST)
    Evaluator(_scenario("class-incremental"), learner, ctx).run()
    assert all(r == 3 for kept in learner.ranks for ranks in kept.values() for r in ranks)
    dyn = DynRank(rank=3, train=FAST)
    Evaluator(_scenario("class-incremental"), dyn, tiny_context(depth=2)).run()
    assert set(learner.ranks[0]) == set(dyn.ranks[0])
    # seqlora trains no gates: r (in + out) per adapter; dynrank r more
    assert dyn.lora_parameters[0] - learner.lora_parameters[0] == 3 * sum(
        len(v) for v in dyn.ranks[0].values()
    )


def test_new_head_rows_start_at_class_means():
    ctx = tiny_context(depth=2)
    learner = DynRank(rank=2, train={"max_steps": 1, "batch_size": 8, "lr": 0.0})
    learner.setup(ctx)
    scenario = _scenario("class-incremental")
    learner.learn(scenario.tasks[0].train_view())
    with torch.no_grad():
        feats = learner.net(torch.stack([learner.net.transform()(scenario.tasks[0].train.loader(k)) for k in scenario.tasks[0].train.keys]))  # fmt: skip
    labels = torch.from_numpy(scenario.tasks[0].train.labels)
    means = torch.stack([feats[labels == c].mean(0) for c in (0, 1)])
    torch.testing.assert_close(
        learner.head.detach(), nn.functional.normalize(means, dim=-1), atol=1e-4, rtol=1e-4
    )


def test_class_to_image_loss_is_the_reference_soft_target_cross_entropy():
    logits = torch.randn(3, 4)  # 3 classes x 4 images
    labels = torch.tensor([0, 2, 2, 1])
    target = torch.zeros(3, 4)
    target[labels, torch.arange(4)] = 1.0
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(class_to_image_loss(logits, labels), expected)


def _clip_stream(templates: dict[str, str] | None = None) -> Scenario:
    parts = []
    for d, names in enumerate((["red square", "blue circle"], ["cat", "dog", "bird"])):
        classes = list(range(len(names)))
        task, test = synthetic_task(0, classes, len(names), shift=30 * d, per_class=4, seed=d)
        parts.append((f"set{d}", LabelledData(f"set{d}", names, task.train, test)))
    return multi_domain(parts, "clip-synthetic", templates=templates)


def test_dynrank_on_clip_runs_mtil_with_zero_shot_before_learning():
    backbone = openclip_backbone("tiny", image_size=112)
    assert backbone.image_size == 32  # its position grid is fixed
    ctx = RunContext(backbone=backbone, cache=FeatureCache(None), batch_size=16)
    base = count_parameters(backbone, trainable_only=False)
    learner = DynRank(rank=2, max_kappa=0.05, train={"max_steps": 4, "batch_size": 4})
    result = Evaluator(_clip_stream(), learner, ctx).run()
    assert np.isfinite(result.scores).all()  # every dataset tested after every step
    kept = learner.ranks[0]
    assert any(k.startswith("visual.") for k in kept) and any(
        k.startswith("transformer.") for k in kept
    )
    assert all(len(v) == 4 for k, v in kept.items() if k.endswith("attn"))  # q, k, v, out
    assert count_parameters(learner.net, trainable_only=False) == base
    assert learner.class_prompts == [
        f"a photo of a {name}." for name in ["red square", "blue circle", "cat", "dog", "bird"]
    ]


@pytest.mark.parametrize("template", ["dataset", "art of the {}."])
def test_clip_prompts_follow_each_datasets_template_unless_one_is_given(template, monkeypatch):
    backbone = openclip_backbone("tiny")
    ctx = RunContext(backbone=backbone, cache=FeatureCache(None), batch_size=16)
    scenario = _clip_stream({"set0": "a drawing of a {} shape."})  # set1 has none
    seen: list[list[str]] = []
    encode = type(backbone).prompt_embeddings
    monkeypatch.setattr(
        type(backbone), "prompt_embeddings", lambda net, p: seen.append(list(p)) or encode(net, p)
    )
    learner = DynRank(rank=2, template=template, train={"max_steps": 2, "batch_size": 4})
    Evaluator(scenario, learner, ctx).run()
    if template == "dataset":
        shapes = ["a drawing of a red square shape.", "a drawing of a blue circle shape."]
        animals = ["a photo of a cat.", "a photo of a dog.", "a photo of a bird."]
    else:
        shapes = ["art of the red square.", "art of the blue circle."]
        animals = ["art of the cat.", "art of the dog.", "art of the bird."]
    assert learner.class_prompts == shapes + animals  # what training used, by label
    assert shapes in seen and animals in seen  # task-IL tests: each dataset's own prompts
    assert {p for batch in seen for p in batch} == set(shapes + animals)


def test_clip_without_task_ids_scores_the_learned_class_names():
    backbone = openclip_backbone("tiny")
    ctx = RunContext(backbone=backbone, cache=FeatureCache(None), batch_size=16)
    scenario = _clip_stream()
    learner = DynRank(rank=2, train={"max_steps": 2, "batch_size": 4})
    learner.setup(ctx)
    with pytest.raises(ConfigError, match="none yet"):
        learner.predict(scenario.tasks[0].test.inputs())
    learner.learn(scenario.tasks[0].train_view())
    assert learner.predict(scenario.tasks[0].test.inputs()).shape == (
        len(scenario.tasks[0].test),
        2,
    )


def test_bad_options_are_refused():
    with pytest.raises(ConfigError):
        DynRank(rank=0)
    with pytest.raises(ConfigError):
        DynRank(dense_fraction=1.0)
    with pytest.raises(ConfigError, match="no '{}'"):
        DynRank(template="a photo")
    with pytest.raises(ConfigError):
        DynRank(train={"no_such_option": 1})
