"""Every backbone family loads weights strictly and reads weight files safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clbench.backbones import build_backbone, parse_backbone_spec
from clbench.backbones._weights import check_fit, read_state_dict
from clbench.errors import ClbenchError, ConfigError


def _save(path: Path, state: dict) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


WRONG = {"foo": torch.zeros(3)}

# One spec per backbone family; each must refuse weights whose keys do not fit.
FAMILIES = [
    ("timm:resnet18", "w.pth"),
    ("efficientnet-lite0", "w.pth"),
    ("dinov2-vits14", "w.safetensors"),
    ("openclip:ViT-S-32", "w.pth"),
]


@pytest.mark.parametrize("spec,name", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_mismatched_weights_stop_the_run(spec, name, tmp_path):
    path = _save(tmp_path / name, WRONG)
    with pytest.raises(ClbenchError) as info:
        build_backbone(spec, str(path), 56 if "dinov2" in spec else None)
    text = str(info.value)
    assert str(path) in text
    assert "foo" in text or "expects" in text  # the stray key, or the count that cannot pair


def test_timm_lists_missing_and_unexpected_keys(tmp_path):
    import timm

    state = timm.create_model("resnet18", num_classes=0).state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(1000, 512)  # the dropped classifier may be left over
    path = _save(tmp_path / "r18.pth", state)
    with pytest.raises(ClbenchError) as info:
        build_backbone("timm:resnet18", str(path))
    text = str(info.value)
    assert "1 missing: layer1.0.conv1.weight" in text
    assert "1 unexpected: extra.weight" in text
    assert "fc.weight" not in text


def test_timm_loads_its_own_weights_exactly(tmp_path):
    import timm

    source = timm.create_model("resnet18", num_classes=10)
    path = _save(tmp_path / "r18.pth", source.state_dict())
    backbone = build_backbone("timm:resnet18", str(path))
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_misshapen_tensor_is_named():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ClbenchError, match=r"weight \(2, 4\) vs \(2, 3\)"):
        check_fit(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "x")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"],
    ids=["empty", "garbage", "truncated-zip"],
)
def test_unreadable_weight_files_are_one_message(content, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(ClbenchError, match="w.pth"):
        read_state_dict(path)


def test_folder_and_foreign_objects_are_refused(tmp_path):
    with pytest.raises(ClbenchError, match="folder"):
        read_state_dict(tmp_path)
    path = _save(tmp_path / "list.pth", [1, 2, 3])
    with pytest.raises(ClbenchError, match="not a state dict"):
        read_state_dict(path)


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_file_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    path = _save(tmp_path / "evil.pth", {"w": evil})
    with pytest.raises(ClbenchError, match="objects other than tensors"):
        read_state_dict(path)
    assert not marker.exists()


def test_wrapped_state_dicts_are_unwrapped(tmp_path):
    inner = {"weight": torch.ones(2)}
    path = _save(tmp_path / "w.pth", {"state_dict": {f"module.{k}": v for k, v in inner.items()}})
    assert list(read_state_dict(path)) == ["weight"]


@pytest.mark.parametrize("spec", ["timm:", "openclip: ", ":"])
def test_empty_model_name_is_refused(spec):
    with pytest.raises(ConfigError, match="names no model"):
        parse_backbone_spec(spec)
