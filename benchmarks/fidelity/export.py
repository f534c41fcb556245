"""Write clbench's offline data and backbone in the form a reference repository reads.

Data: an emoji split as an ImageFolder tree ``ROOT/train/<id>/`` and
``ROOT/test/<id>/``, class folders named by clbench's class id (zero-padded,
so the sorted folder order *is* the id order and the seed-1993 permutation
both sides draw lands on the same classes). Images are written as RGB PNGs
exactly as clbench's loader delivers them (alpha composited on white): a
reference's ``Image.convert("RGB")`` would otherwise drop the alpha channel
and see black where clbench sees white.

Backbone: the clbench network (``Backbone.model``, weights from clbench's
cache) traced to TorchScript, so the reference runs the very same computation
without clbench's timm (PILOT needs timm 0.6); the traced call equals
clbench's ``Backbone.embed``, checked at export.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed onto it once the block has written it.

    Harness runs started in parallel export the same backbone: a reader must never see a
    half-written file (one such run once failed with ``PytorchStreamReader failed reading
    file data.pkl``). ``os.replace`` is atomic within one filesystem, so every reader sees
    either the old complete file or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def tree_once(root: Path, write: Callable[[Path], dict]) -> dict:
    """The export metadata of the tree at ``root``, writing the tree first if it is missing.

    The tree is written under a temporary name and renamed into place whole, so a parallel
    run reads either no tree or a complete one; when two runs write it at once, the first
    rename wins and the other's copy is discarded (both wrote the same images).
    """
    meta_path = root / "clbench-export.json"
    if not meta_path.exists():
        temporary = root.with_name(f".{root.name}.{os.getpid()}.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            meta = write(temporary)
            (temporary / "clbench-export.json").write_text(json.dumps(meta, indent=1))
            try:
                temporary.rename(root)
            except OSError:
                if not meta_path.exists():  # not a lost race: a stale tree without metadata
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return json.loads(meta_path.read_text())


def export_emoji(
    root: Path, scenario: str = "emoji-cil", vendor: str | None = None
) -> dict[str, object]:
    """The emoji images of ``scenario`` (its full train/test split) under ``root``."""
    from clbench.scenarios.emoji import read_emoji

    data = read_emoji(vendor or "google", 6, False)

    def write(tree: Path) -> dict:
        width = len(str(len(data.class_names) - 1))
        for part, samples in (("train", data.train), ("test", data.test)):
            for index, (key, label) in enumerate(zip(samples.keys, samples.labels, strict=True)):
                folder = tree / part / f"{int(label):0{width}d}"
                folder.mkdir(parents=True, exist_ok=True)
                samples.loader(key).save(folder / f"{index:05d}.png")
        return {
            "scenario": scenario,
            "source": data.train.source,
            "classes": list(data.class_names),
            "train": len(data.train.keys),
            "test": len(data.test.keys),
        }

    return tree_once(root, write)


def export_backbone(spec: str, path: Path, image_size: int = 224) -> dict[str, object]:
    """Save the clbench backbone ``spec`` (its network) for the reference to load."""
    from clbench.backbones import build_backbone

    backbone = build_backbone(spec, image_size=image_size).eval()
    probe = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone.embed(x)

    with torch.no_grad(), written_atomically(path) as temporary:
        traced = torch.jit.trace(Embed().eval(), probe)
        traced.save(str(temporary))
        other = torch.rand(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
        same = torch.allclose(
            torch.jit.load(str(temporary))(other), backbone.embed(other), atol=1e-5
        )
        if not same:  # the reference calls the traced module: it must be clbench's embedding
            raise RuntimeError(f"{spec}: the traced network differs from Backbone.embed")
    return {"spec": spec, "file": str(path), "feature_dim": backbone.feature_dim}


def export_stream(
    root: Path, parts: list[tuple[object, list[int], int | None, int | None]]
) -> dict:
    """Several datasets' classes as one ImageFolder tree, class ids in the order given.

    ``parts`` holds (LabelledData, its class ids to take, train cap, test cap per
    class); the caps keep the first images of each class (in the reader's order).
    Used for shifted streams (emoji, then Fashion-MNIST) run unshuffled.
    """

    def write(tree: Path) -> dict:
        names, counts = [], {"train": 0, "test": 0}
        for data, classes, train_cap, test_cap in parts:
            for cls in classes:
                folder_id = len(names)
                names.append(f"{data.name}:{data.class_names[cls]}")
                for part, samples, cap in (
                    ("train", data.train, train_cap),
                    ("test", data.test, test_cap),
                ):
                    keys = [
                        k
                        for k, y in zip(samples.keys, samples.labels, strict=True)
                        if int(y) == cls
                    ]
                    folder = tree / part / f"{folder_id:02d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    for index, key in enumerate(keys[:cap]):
                        samples.loader(key).save(folder / f"{index:05d}.png")
                        counts[part] += 1
        return {"classes": names, **counts}

    return tree_once(root, write)


def export_sema_vit(spec: str, path: Path, image_size: int) -> dict[str, object]:
    """The DINOv2 weights in the layout of SEMA-CL's ``backbone/vit_sema.py`` ViT
    (also LAMDA-PILOT's ``backbone/vit_adapter.py`` and ``vit_mos.py``: same key names).

    That ViT has separate q/k/v projections, ``fc1``/``fc2`` directly in the
    block and no layer scale: qkv is split (as SEMA's own loader does for ViT-B)
    and DINOv2's layer-scale gammas are folded into ``attn.proj`` and ``fc2``
    (``g * (W x + b) = (g W) x + g b``, exact), so the reference's block computes
    what timm's DINOv2 block computes, adapters added after the scaled MLP as
    in clbench's ``AdaptedBlock``.
    """
    from clbench.backbones import build_backbone

    backbone = build_backbone(spec, image_size=image_size)
    out = sema_layout(backbone.model)
    with written_atomically(path) as temporary:
        torch.save(out, temporary)
    return exported(spec, path, backbone, image_size)


def exported(spec: str, path: Path, backbone, image_size: int, **vit_extra) -> dict[str, object]:
    """What an export wrote: the file, the feature size and the ViT's shape."""
    model = backbone.model
    return {
        "spec": spec,
        "file": str(path),
        "feature_dim": backbone.feature_dim,
        "vit": {
            "patch_size": model.patch_embed.patch_size[0],
            "embed_dim": model.embed_dim,
            "depth": len(model.blocks),
            "num_heads": model.blocks[0].attn.num_heads,
            "img_size": image_size,
            **vit_extra,
        },
    }


def sema_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A timm ViT's state dict renamed for SEMA-CL's ViT, qkv split, layer scale folded."""
    dim = model.embed_dim
    out = {}
    for key, value in folded_layer_scale(model.state_dict()).items():
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            kind = key.rsplit(".", 1)[1]
            prefix = key[: -len(f"qkv.{kind}")]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.split(dim), strict=True):
                out[f"{prefix}{name}.{kind}"] = part.contiguous()
            continue
        out[key.replace(".mlp.fc", ".fc")] = value
    return out


def folded_layer_scale(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT state dict without layer scale, computing the same function.

    For the references' ViTs whose blocks have no layer scale: each block's gammas are
    folded into the projection they scale (``ls1`` into ``attn.proj``, ``ls2`` into
    ``mlp.fc2``; ``g * (W x + b) = (g W) x + g b``, exact). Key names stay timm's.
    """
    out = {k: v.detach().clone() for k, v in state.items() if ".ls1." not in k and ".ls2." not in k}
    for key, gamma in state.items():
        if not key.endswith((".ls1.gamma", ".ls2.gamma")):
            continue
        block, ls = key.split(".")[1], key.split(".")[2]
        target = f"blocks.{block}.{'attn.proj' if ls == 'ls1' else 'mlp.fc2'}"
        out[f"{target}.weight"] = out[f"{target}.weight"] * gamma[:, None]
        out[f"{target}.bias"] = out[f"{target}.bias"] * gamma
    return out


def export_timm_vit(
    spec: str, path: Path, image_size: int, fold_layer_scale: bool = False
) -> dict[str, object]:
    """The clbench ViT's own timm state dict, for PILOT's prompt ViTs (``backbone/vit_l2p.py``,
    ``vit_dualprompt.py``, ``vit_coda_promtpt.py``), which keep timm's key names (fused qkv,
    ``mlp.fc1``).

    The position grid is already fitted to ``image_size`` (clbench's loader does it); a
    truncated DINOv2 (clbench's default feature) has no final-norm keys. ``vit`` also says
    whether the blocks have layer scale, so that the reference's ViT is built with it;
    ``fold_layer_scale`` folds it away instead, for a ViT whose blocks have none (CODA's).
    """
    from clbench.backbones import build_backbone

    backbone = build_backbone(spec, image_size=image_size)
    own = backbone.model.state_dict()
    state = (
        folded_layer_scale(own)
        if fold_layer_scale
        else {k: v.detach().clone() for k, v in own.items()}
    )
    with written_atomically(path) as temporary:
        torch.save(state, temporary)
    return exported(spec, path, backbone, image_size, layer_scale="blocks.0.ls1.gamma" in state)
