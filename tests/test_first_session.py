"""ADAM/APER, FSA, finetune and joint on a tiny synthetic stream (fast, no assets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.backbones import Backbone
from clbench.context import RunContext
from clbench.data import ArrayLoader, LabelledData, Samples, concat_samples
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.features import FeatureCache
from clbench.methods.aper import APER
from clbench.methods.finetune import Finetune, Joint
from clbench.methods.fsa import FSA
from clbench.methods.peft import Adapter, count_parameters
from clbench.scenario import class_incremental

DIM, DEPTH, SIZE, CLASSES = 32, 2, 28, 6


def toy_data() -> LabelledData:
    """Six classes of 28 px images, each class a colour plus noise."""
    rng = np.random.RandomState(0)
    colours = rng.randint(0, 255, (CLASSES, 3))

    def part(prefix: str, n: int) -> Samples:
        labels = np.repeat(np.arange(CLASSES), n)
        noise = rng.randint(-40, 40, (len(labels), SIZE, SIZE, 3))
        images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return Samples(
            f"toy/{prefix}",
            [f"{prefix}/{i}" for i in range(len(labels))],
            labels,
            ArrayLoader(images),
        )

    return LabelledData("toy", [f"c{i}" for i in range(CLASSES)], part("train", 6), part("test", 4))


def tiny_vit_backbone() -> Backbone:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=SIZE,
        patch_size=7,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=2,
        init_values=0.5,
        num_classes=0,
    )
    return Backbone(
        model.eval(), name="tiny-vit", weights_id="seed0", feature_dim=DIM, image_size=SIZE
    )


def tiny_cnn_backbone() -> Backbone:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    return Backbone(
        model.eval(),
        name="tiny-cnn",
        weights_id="seed0",
        feature_dim=model.num_features,
        image_size=SIZE,
    )


def run(learner, backbone=None):
    scenario = class_incremental(toy_data(), "toy", num_tasks=3)
    ctx = RunContext(backbone=backbone or tiny_vit_backbone(), cache=FeatureCache(None), seed=7)
    frozen = {k: v.clone() for k, v in ctx.backbone.state_dict().items()}
    evaluation = Evaluator(scenario, learner, ctx).run()
    for k, v in ctx.backbone.state_dict().items():  # the shared PTM is never modified
        assert torch.equal(v, frozen[k]), k
    return evaluation


@pytest.mark.parametrize("peft", ["adapter", "vpt_shallow", "vpt_deep", "ssf", "full"])
def test_aper_variants_adapt_once_and_concatenate(peft):
    learner = APER(peft=peft, bottleneck=4, num_prompts=3, train={"epochs": 2, "lr": 0.05})
    evaluation = run(learner)
    assert np.isfinite(evaluation.scores).sum() == 6  # lower triangle of a 3-task run
    assert learner.stats.sums.shape == (CLASSES, 2 * DIM)  # [frozen, adapted] prototypes
    expected = {
        "adapter": DEPTH * Adapter.num_parameters(DIM, 4),
        "vpt_shallow": 3 * DIM,
        "vpt_deep": DEPTH * 3 * DIM,
    }
    trained = evaluation.trainable_parameters
    assert len(set(trained)) == 1 and trained[0] == expected.get(peft, trained[0]) > 0
    if peft == "full":
        assert trained[0] == count_parameters(tiny_vit_backbone())
    assert len(learner.adapted.log.epochs) == 2


def test_aper_is_deterministic_and_rejects_vit_modules_on_a_cnn():
    first = run(APER(peft="adapter", bottleneck=4, train={"epochs": 1})).scores
    again = run(APER(peft="adapter", bottleneck=4, train={"epochs": 1})).scores
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ConfigError, match="needs a ViT"):
        run(APER(peft="vpt_deep", train={"epochs": 1}), tiny_cnn_backbone())
    with pytest.raises(ConfigError, match="unknown peft"):
        APER(peft="prefix")


def test_cosine_head_is_a_scaled_cosine_and_learns_its_scale():
    from clbench.methods.heads import CosineHead, make_head

    torch.manual_seed(0)
    head = CosineHead(5, 3)
    x = torch.randn(4, 5)
    with torch.no_grad():
        head.scale.fill_(2.5)
    expected = 2.5 * torch.nn.functional.cosine_similarity(
        x[:, None, :], head.weight[None, :, :], dim=2
    )
    assert torch.allclose(head(x), expected, atol=1e-6)
    assert torch.allclose(head(3 * x), head(x), atol=1e-6)  # blind to the feature's norm
    head(x).logsumexp(1).sum().backward()
    assert head.scale.grad is not None and float(head.scale.grad.abs()) > 0
    assert isinstance(make_head("linear", 5, 3), torch.nn.Linear)
    assert isinstance(make_head("cosine", 5, 3), CosineHead)


def test_aper_adapt_head_changes_the_adaptation_only():
    linear = APER(peft="full", train={"epochs": 1, "lr": 0.05})
    cosine = APER(peft="full", adapt_head="cosine", train={"epochs": 1, "lr": 0.05})
    assert APER().hyperparameters()["adapt_head"] == "linear"
    assert cosine.hyperparameters()["adapt_head"] == "cosine"
    first, second = run(linear), run(cosine)
    assert first.scores.shape == second.scores.shape
    adapted = [m.adapted.backbone.state_dict() for m in (linear, cosine)]
    assert any(not torch.equal(adapted[0][k], adapted[1][k]) for k in adapted[0])
    with pytest.raises(ConfigError, match="adapt_head"):
        APER(adapt_head="arcface")


@pytest.mark.parametrize("adapt", ["full", "film"])
def test_fsa_keeps_statistics_not_features(adapt):
    learner = FSA(adapt=adapt, train={"epochs": 2})
    evaluation = run(learner)
    assert learner.stats.outer.shape == (DIM, DIM) and learner.stats.counts.sum() == CLASSES * 6
    held = [v for v in vars(learner).values() if isinstance(v, torch.Tensor)]
    assert not held  # no feature matrix is kept between tasks
    film_params = 2 * DIM * (2 * DEPTH + 1)  # gamma and beta after every LayerNorm
    assert evaluation.trainable_parameters[-1] == (
        film_params if adapt == "film" else count_parameters(tiny_vit_backbone())
    )


def test_fsa_schedule_keeps_the_reference_fractions():
    assert FSA(train={"epochs": 200}).train.milestones == (50, 100, 150)
    assert FSA(train={"epochs": 8}).train.milestones == (2, 4, 6)
    assert FSA().train.optimizer == "adam" and FSA().train.gamma == 0.7
    # Milestones given explicitly are kept.
    assert FSA(train={"epochs": 8, "milestones": [3]}).train.milestones == (3,)


def test_fsa_film_on_a_cnn_keeps_batchnorm_statistics():
    learner = FSA(adapt="film", train={"epochs": 1})
    backbone = tiny_cnn_backbone()
    run(learner, backbone)
    adapted = dict(learner.adapted.backbone.named_buffers())
    statistics = [n for n, _ in backbone.named_buffers() if "running_" in n]
    assert statistics and all(n in adapted for n in statistics)  # FiLM sits inside bn.act
    for name, buffer in backbone.named_buffers():
        if name in statistics:
            assert torch.equal(adapted[name], buffer), name


def test_finetune_and_joint():
    finetune = Finetune(train={"epochs": 2, "lr": 0.05})
    result = run(finetune)
    assert finetune.head.out_features == CLASSES and len(finetune.logs) == 3
    joint = Joint(train={"epochs": 1, "lr": 0.05})
    run(joint)
    assert [len(log) for log in joint.logs] == [1, 1, 1]
    assert sum(len(s) for s in joint.seen) == CLASSES * 6 and result.trainable_parameters[-1] > 0
    data = toy_data()
    with pytest.raises(Exception, match="different sources"):
        concat_samples([data.train, data.test])
