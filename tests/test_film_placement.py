"""FSA-FiLM's placement on a CNN follows the authors' code: stem, depthwise and head BatchNorms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import clbench.backbones  # noqa: F401  (makes torchvision, hence timm, importable on CPU torch)
from clbench.errors import ConfigError
from clbench.methods.fsa import FSA
from clbench.methods.peft import FiLM, attach_film, freeze
from tests.test_first_session import run, tiny_cnn_backbone, tiny_vit_backbone


def timm_cnn(name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=0).eval()


def reference_channels(model: nn.Module) -> int:
    """Channels FSA's FilmEfficientNet modulates: stem BN, each block's depthwise conv, head BN."""
    depthwise = sum(block.conv_dw.out_channels for stage in model.blocks for block in stage)
    return model.bn1.num_features + depthwise + model.bn2.num_features


def film_parameters(films: list[FiLM]) -> int:
    return sum(p.numel() for f in films for p in f.parameters())


def test_efficientnet_b0_gets_the_references_film_layers():
    # 18 layers, 20,544 parameters: what aresPanos/fsa's create_film_adapter builds on its
    # EfficientNet-B0 (measured with benchmarks/fidelity/fsa_run.py --mode film-counts).
    films = attach_film(timm_cnn("efficientnet_b0"), where="depthwise")
    assert len(films) == 18
    assert film_parameters(films) == 20_544


def test_depthwise_placement_on_lite0_and_identity_at_init():
    model = timm_cnn("tf_efficientnet_lite0")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    expected = 2 * reference_channels(model)
    freeze(model)
    films = attach_film(model, where="depthwise")
    assert film_parameters(films) == expected
    every = attach_film(timm_cnn("tf_efficientnet_lite0"))
    assert film_parameters(every) > expected  # "all" also modulates expansion/projection BNs
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6)
    # before the activation of the depthwise conv's BN; none after the expansion BN
    block = model.blocks[1][0]
    assert isinstance(block.bn2.act[0], FiLM) and not isinstance(block.bn1.act, nn.Sequential)


def test_unknown_placement_is_refused():
    with pytest.raises(ValueError, match="placement"):
        attach_film(timm_cnn("tf_efficientnet_lite0"), where="everywhere")
    with pytest.raises(ConfigError, match="film_placement"):
        FSA(adapt="film", film_placement="everywhere")


def test_fsa_film_trains_the_reference_placement_by_default():
    backbone = tiny_cnn_backbone()
    expected = 2 * reference_channels(backbone.model)
    learner = FSA(adapt="film", train={"epochs": 1})
    run(learner, backbone)
    assert learner.trainable_parameters() == expected
    every = FSA(adapt="film", film_placement="all", train={"epochs": 1})
    run(every, tiny_cnn_backbone())
    norms = [m for m in backbone.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert every.trainable_parameters() == 2 * sum(n.num_features for n in norms)


def test_vit_layernorms_are_all_modulated_either_way():
    counts = [
        film_parameters(attach_film(tiny_vit_backbone().model, where=w))
        for w in ("all", "depthwise")
    ]
    assert counts[0] == counts[1] > 0


def test_fsa_adapts_through_the_references_head_dropout(monkeypatch):
    """aresPanos/fsa feeds its temporary head ``Dropout(0.5)(features)`` (cil_trainer.py:30, 199)."""
    import clbench.methods.adaptation as adaptation

    seen = []
    own = adaptation.fit

    def recorded(params, batches, step, cfg, device, *args, modules=(), **kwargs):
        seen.append([m for model in modules for m in model.modules() if isinstance(m, nn.Dropout)])
        return own(params, batches, step, cfg, device, *args, modules=modules, **kwargs)

    monkeypatch.setattr(adaptation, "fit", recorded)
    run(FSA(adapt="film", train={"epochs": 1}), tiny_cnn_backbone())
    run(FSA(adapt="film", head_dropout=0.0, train={"epochs": 1}), tiny_cnn_backbone())
    assert [[d.p for d in found] for found in seen] == [[0.5], []]
    with pytest.raises(ConfigError, match="head_dropout"):
        FSA(head_dropout=1.0)
