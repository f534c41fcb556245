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
from pathlib import Path

import torch


def export_emoji(
    root: Path, scenario: str = "emoji-cil", vendor: str | None = None
) -> dict[str, object]:
    """The emoji images of ``scenario`` (its full train/test split) under ``root``."""
    from clbench.scenarios.emoji import read_emoji

    data = read_emoji(vendor or "google", 6, False)
    meta_path = root / "clbench-export.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    width = len(str(len(data.class_names) - 1))
    for part, samples in (("train", data.train), ("test", data.test)):
        for index, (key, label) in enumerate(zip(samples.keys, samples.labels, strict=True)):
            folder = root / part / f"{int(label):0{width}d}"
            folder.mkdir(parents=True, exist_ok=True)
            samples.loader(key).save(folder / f"{index:05d}.png")
    meta = {
        "scenario": scenario,
        "source": data.train.source,
        "classes": list(data.class_names),
        "train": len(data.train.keys),
        "test": len(data.test.keys),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def export_backbone(spec: str, path: Path, image_size: int = 224) -> dict[str, object]:
    """Save the clbench backbone ``spec`` (its network) for the reference to load."""
    from clbench.backbones import build_backbone

    backbone = build_backbone(spec, image_size=image_size).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone.embed(x)

    with torch.no_grad():
        traced = torch.jit.trace(Embed().eval(), probe)
        traced.save(str(path))
        other = torch.rand(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
        same = torch.allclose(torch.jit.load(str(path))(other), backbone.embed(other), atol=1e-5)
    if not same:  # the reference calls the traced module: it must be clbench's embedding
        raise RuntimeError(f"{spec}: the traced network differs from Backbone.embed")
    return {"spec": spec, "file": str(path), "feature_dim": backbone.feature_dim}
