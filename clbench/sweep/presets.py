"""Grids users regenerate as a whole: the offline table and the PTM anchor table.

``offline``: every offline scenario (real data from package registries) x every
method that supports it x 3 seeds. Methods that put adapters or prompts into a
ViT run on the offline ViT (DINOv2 ViT-S/14), the others on EfficientNet-Lite0.

``ptm-table``: the anchor table of PROTOCOLS.md, its seven class-incremental
datasets x the table's methods clbench implements (SimpleCIL, APER with an
adapter, MOS) x 3 seeds on ViT-B/16 IN-21k; for users with the data and a GPU.
"""

from __future__ import annotations

from clbench.errors import ConfigError
from clbench.runner import DEFAULT_BACKBONE
from clbench.sweep.grid import FIRST_SEED, Grid

#: The scenarios built from registry-shipped data, with the protocol each runs.
OFFLINE_SCENARIOS = {
    "emoji-cil": "class-incremental",
    "emoji-dil": "domain-incremental",
    "emoji-fscil": "class-incremental",
    "fashion-mnist": "class-incremental",
}
OFFLINE_VIT = "dinov2-vits14"
#: Methods whose default configuration adapts the blocks of a ViT.
VIT_METHODS = ("aper", "mos", "sema")

PTM_SCENARIOS = (
    "cifar100-b0inc5",
    "cub200",
    "imagenet-r",
    "imagenet-a",
    "objectnet",
    "omnibenchmark",
    "vtab",
)
PTM_METHODS = ("simplecil", "aper", "mos")
PTM_BACKBONE = "timm:vit_base_patch16_224.augreg_in21k"
PRESETS = ("offline", "ptm-table")


def supports(method: str, protocol: str, modality: str = "image") -> bool:
    """Whether a method declares the protocol and input modality (``Learner.protocols``,
    ``modalities``); the same check the runner makes before a run."""
    from clbench.registry import METHODS

    learner = METHODS.get(method).factory
    # A factory function declares nothing: the runner's own check refuses the
    # pairing at run time, and the sweep reports it as that point's failure.
    protocols = getattr(learner, "protocols", None)
    modalities = getattr(learner, "modalities", None)
    return (protocols is None or protocol in protocols) and (
        modalities is None or modality in modalities
    )


def preset_grids(name: str, seeds: int = 3) -> list[Grid]:
    """The grids of a preset (one per scenario where methods differ by scenario)."""
    from clbench.registry import METHODS

    seed_list = list(range(FIRST_SEED, FIRST_SEED + seeds))
    if name == "offline":
        grids = []
        for scenario, protocol in OFFLINE_SCENARIOS.items():
            methods = [m for m in METHODS.names() if supports(m, protocol)]
            grids.append(
                Grid(
                    methods=methods,
                    scenarios=[scenario],
                    backbones=[DEFAULT_BACKBONE],
                    seeds=seed_list,
                    method_backbones={m: [OFFLINE_VIT] for m in VIT_METHODS if m in methods},
                )
            )
        return grids
    if name == "ptm-table":
        return [
            Grid(
                methods=list(PTM_METHODS),
                scenarios=list(PTM_SCENARIOS),
                backbones=[PTM_BACKBONE],
                seeds=seed_list,
                method_options={"aper": {"peft": "adapter"}},
            )
        ]
    raise ConfigError(f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}")
