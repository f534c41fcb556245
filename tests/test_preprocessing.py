"""A backbone's preprocessing comes from its weights and changes only by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clbench.backbones.preprocessing import Preprocessing, from_timm_config, parse_normalization
from clbench.errors import ConfigError
from clbench.registry import create_backbone
from clbench.runner import RunSpec, preprocessing_overrides, run
from tests.helpers import write_image_folder
from tests.leaderboard_fixtures import fake_result


def test_efficientnet_lite0_uses_its_tf_pretraining_config():
    pre = create_backbone("efficientnet-lite0").preprocessing
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert (pre.image_size, pre.crop_pct, pre.resize_size) == (224, 0.875, 256)
    assert pre.interpolation == "bicubic" and pre.normalization == "inception"
    assert "tf_efficientnet_lite0" in pre.source and pre.overrides == ()


def test_image_size_keeps_the_crop_fraction():
    small = create_backbone("efficientnet-lite0", image_size=112).preprocessing
    assert (small.image_size, small.crop_pct, small.resize_size) == (112, 0.875, 128)
    assert small.overrides == ("image_size",)


def test_timm_backbone_keeps_its_crop_at_another_size(tmp_path):
    import timm

    weights = tmp_path / "lite0.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), weights)
    backbone = create_backbone(
        "timm", model="tf_efficientnet_lite0", weights=str(weights), image_size=160
    )
    pre = backbone.preprocessing
    assert (pre.image_size, pre.crop_pct, pre.mean) == (160, 0.875, (0.5, 0.5, 0.5))
    assert pre.source == "timm:tf_efficientnet_lite0 pretrained_cfg"


def test_dinov2_uses_the_dinov2_evaluation_transform():
    pre = create_backbone("dinov2-vits14", image_size=56).preprocessing
    assert (pre.image_size, pre.resize_size, pre.crop_pct) == (56, 64, 0.875)
    assert pre.normalization == "imagenet" and pre.interpolation == "bicubic"


def test_timm_config_squash_mode_and_defaults():
    cfg = {"input_size": (3, 192, 192), "crop_pct": 0.9, "crop_mode": "squash"}
    pre = from_timm_config(cfg, None, source="x")
    assert (pre.image_size, pre.resize, pre.resize_size) == (192, "squash", 213)
    assert pre.normalization == "imagenet" and pre.overrides == ()


def test_overrides_are_recorded_in_order_and_no_ops_are_not():
    base = Preprocessing(224, 0.875, mean=(0.5,) * 3, std=(0.5,) * 3)
    same = base.override(crop_pct=0.875, normalization="pretrained", image_size=None)
    assert same is base
    changed = base.override(normalization="none", crop_pct="1.0", resize="squash")
    assert changed.overrides == ("normalization", "crop_pct", "resize")
    assert changed.mean == (0.0,) * 3 and changed.std == (1.0,) * 3 and changed.crop_pct == 1.0
    assert changed.to_dict()["overrides"] == ["normalization", "crop_pct", "resize"]
    assert changed.transform_id != base.transform_id


def test_explicit_mean_std():
    mean, std = parse_normalization("0.1,0.2,0.3/0.4,0.5,0.6")
    assert mean == (0.1, 0.2, 0.3) and std == (0.4, 0.5, 0.6)
    pre = Preprocessing(32, mean=mean, std=std)
    assert pre.normalization == "custom" and "m0.1,0.2,0.3s0.4,0.5,0.6" in pre.transform_id


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"crop_pct": 1.5}, "crop fraction must be in (0, 1]"),
        ({"crop_pct": 0}, "crop fraction must be in (0, 1]"),
        ({"crop_pct": "wide"}, "crop fraction must be a number"),
        ({"normalization": "imagenett"}, "unknown normalization"),
        ({"normalization": "1,2/3,4"}, "3 means and 3 stds"),
        ({"normalization": "0,0,0/1,0,1"}, "std > 0"),
        ({"normalization": "a,b,c/1,1,1"}, "is not numbers"),
        ({"resize": "fit"}, "unknown resize mode"),
        ({"interpolation": "lanczos9"}, "unknown interpolation"),
        ({"image_size": 0}, "positive integer"),
        ({"train_crop_scale": 0}, "training crop scale must be in (0, 1]"),
        ({"train_crop_scale": 1.2}, "training crop scale must be in (0, 1]"),
        ({"image_size": 1.5}, "must be an integer"),
        ({"gamma": 2}, "unknown preprocessing option"),
    ],
)
def test_bad_overrides_are_one_clear_error(change, fragment):
    with pytest.raises(
        ConfigError,
    ) as info:
        Preprocessing(224).override(**change)
    assert fragment in str(info.value)


def test_eval_transform_crops_and_normalises_as_configured():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    plain = Preprocessing(32, 1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    x = plain.transform()(image)
    assert x.shape == (3, 32, 32) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    norm = plain.override(normalization="inception").transform()(image)
    torch.testing.assert_close(norm, (x - 0.5) / 0.5)
    squash = plain.override(resize="squash").transform()(image)
    assert squash.shape == x.shape and not torch.allclose(squash, x)
    cropped = plain.override(crop_pct=0.5).transform()(image)
    assert not torch.allclose(cropped, x)


def test_train_crop_scale_sets_the_augmentation_and_not_the_cache_key():
    from torchvision import transforms as T

    base = Preprocessing(32, 0.875)
    wide = base.override(train_crop_scale=0.05)
    (crop,) = [
        t for t in wide.transform(train=True).transforms if isinstance(t, T.RandomResizedCrop)
    ]
    assert crop.scale == (0.05, 1.0)
    (default,) = [
        t for t in base.transform(train=True).transforms if isinstance(t, T.RandomResizedCrop)
    ]
    assert default.scale == (0.6, 1.0)
    assert wide.overrides == ("train_crop_scale",) and wide.to_dict()["train_crop_scale"] == 0.05
    assert wide.transform_id == base.transform_id  # test-time pixels, hence cached features, same


def test_run_records_preprocessing_and_folder_protocol_pins_it(tmp_path):
    root = write_image_folder(tmp_path / "data", {f"c{i}": 3 for i in range(4)}, size=24)
    spec = RunSpec(
        scenario="folder",
        method="simplecil",
        scenario_options={
            "root": str(root),
            "increment": 2,
            "image_size": 32,
            "normalization": "none",
            "crop_pct": 0.5,
            "train_crop_scale": 0.05,
        },
        device="cpu",
    )
    result = run(spec)
    pre = result.config["backbone"]["preprocessing"]
    assert pre["normalization"] == "none" and pre["crop_pct"] == 0.5 and pre["resize_size"] == 64
    assert pre["train_crop_scale"] == 0.05
    assert pre["overrides"] == ["image_size", "crop_pct", "normalization", "train_crop_scale"]
    assert "crop0.5" in result.config["backbone"]["cache_id"]
    # The run's own option wins over the scenario's.
    spec.crop_pct = 0.875
    overrides = preprocessing_overrides(spec, result.config["scenario"]["protocol"])
    assert overrides["crop_pct"] == 0.875 and overrides["normalization"] == "none"


def test_folder_scenario_rejects_a_bad_pipeline_at_once(tmp_path):
    from clbench.registry import create_scenario

    root = write_image_folder(tmp_path / "data", {"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="unknown resize mode"):
        create_scenario("folder", root=str(root), increment=1, resize_mode="stretch")
    with pytest.raises(ConfigError, match="training crop scale"):
        create_scenario("folder", root=str(root), increment=1, train_crop_scale=0.0)


def test_gate_ignores_runs_with_other_or_unrecorded_preprocessing():
    from clbench.regression import RunKey, expected_method_config, matches

    key = RunKey(scenario="emoji-cil", method="simplecil", backbone="efficientnet-lite0", seed=1)
    config = expected_method_config(key)
    good = fake_result(method="simplecil", seed=1)
    assert matches(good, key, config)
    good.config["backbone"]["preprocessing"]["overrides"].append("crop_pct")
    assert not matches(good, key, config)
    del good.config["backbone"]["preprocessing"]
    assert not matches(good, key, config)
