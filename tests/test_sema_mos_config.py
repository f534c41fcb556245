"""SEMA and MOS are configured like every method: --set, config files, constructor defaults."""

from __future__ import annotations

import pytest

from clbench.cli import build_parser, main
from clbench.cli.run import spec_from_args
from clbench.errors import ConfigError
from clbench.registry import create_method


def test_published_defaults():
    sema, mos = create_method("sema"), create_method("mos")
    assert (sema.train.lr, sema.train.weight_decay, sema.train.batch_size) == (0.005, 5e-4, 32)
    assert (mos.train.lr, mos.train.batch_size, mos.train.epochs) == (0.05, 16, 10)
    assert (sema.bottleneck, sema.dropout) == (
        16,
        0.1,
    )
    assert (sema.expansion_threshold, sema.buffer_size, sema.expand_layers) == (2.0, 500, 3)
    assert (
        mos.adapter_momentum,
        mos.contrastive_weight,
        mos.temperature,
        mos.max_refine_iterations,
    ) == (0.1, 0.1, 0.8, 4)


def test_cli_sets_and_config_file_reach_the_constructor(tmp_path):
    config = tmp_path / "sema.toml"
    config.write_text(
        '[run]\nmethod = "sema"\nbackbone = "dinov2-vits14"\n'
        "[method]\nexpand_layers = [9, 10]\n[method.train]\nepochs = 3\nlr = 0.01\n"
        "[scenario]\nnum_tasks = 3\n"
    )
    args = build_parser().parse_args(
        [
            "run",
            "--config",
            str(config),
            "--set",
            "train.epochs=2",
            "--set",
            "expansion_threshold=1.5",
        ]
    )
    spec = spec_from_args(args)
    learner = create_method(spec.method, **spec.method_options)
    assert (learner.expand_layers, learner.expansion_threshold) == ([9, 10], 1.5)
    # --set train.epochs overrides the file's epochs; the file's lr stays.
    assert (learner.train.epochs, learner.train.lr) == (2, 0.01)
    assert spec.scenario_options == {"num_tasks": 3} and spec.backbone == "dinov2-vits14"


@pytest.mark.parametrize("method", ["sema", "mos"])
def test_unknown_option_is_a_one_line_error(method, capsys):
    with pytest.raises(ConfigError):
        create_method(method, learning_rate=0.1)
    assert main(["run", "--method", method, "--set", "learning_rate=0.1", "--no-store"]) == 2
    assert "has no option learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sema", "mos"])
def test_a_cnn_backbone_is_refused_with_a_hint(method):
    import torch

    from clbench.backbones import Backbone
    from clbench.context import RunContext
    from clbench.features import FeatureCache
    from tests.synthetic_vit import synthetic_task

    cnn = Backbone(
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        ),
        name="test:cnn",
        weights_id="random",
        feature_dim=4,
        image_size=32,
    )
    learner = create_method(method)
    learner.setup(RunContext(backbone=cnn, cache=FeatureCache(None)))
    with pytest.raises(ConfigError, match="adapts the blocks of a ViT"):
        learner.learn(synthetic_task(0, [0, 1], 2)[0])
