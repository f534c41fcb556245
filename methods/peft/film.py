"""FiLM: per-channel gamma/beta after the normalisation layers (FSA's few-shot adaptation).

On a CNN each BatchNorm output is modulated before its activation: for timm's
fused ``BatchNormAct2d`` the FiLM layer goes between the normalisation and the
activation (``bn.act = Sequential(FiLM, act)``); a plain BatchNorm becomes
``Sequential(bn, FiLM)``. On a ViT every LayerNorm output is modulated.
gamma = 1 and beta = 0 at initialisation, so the network is unchanged.

``where="depthwise"`` is FSA's placement on a CNN (``aresPanos/fsa``,
``src/cnn/efficientnet.py``: ``FilmEfficientNet.extract_features`` and
``FilmMBConvBlock.forward``): one FiLM after the stem's BatchNorm, one after
the BatchNorm of each block's depthwise convolution and one after the head's
BatchNorm, none after the expansion or projection BatchNorms. On
EfficientNet-B0 that is 18 layers and 20,544 parameters, against 49 layers and
42,016 for ``where="all"``. LayerNorms (ViT) are all modulated either way.
"""

from __future__ import annotations

from torch import nn

from clbench.methods.peft.ssf import ChannelAffine


class FiLM(ChannelAffine):
    """Feature-wise linear modulation ``gamma * x + beta`` over one channel axis."""


def _batchnorm_act_type():
    from clbench._compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # timm imports torchvision
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        return ()
    return (BatchNormAct2d,)


PLACEMENTS = ("all", "depthwise")


def is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
    )


def depthwise_batchnorms(model: nn.Module) -> set[int]:
    """ids of the BatchNorms FSA modulates: the first and last of the network and, in
    every module, the first BatchNorm that follows a depthwise convolution among its children."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    chosen = {id(norms[0]), id(norms[-1])} if norms else set()
    for parent in model.modules():
        after_depthwise = False
        for child in parent.children():
            if is_depthwise(child):
                after_depthwise = True
            elif after_depthwise and isinstance(child, nn.modules.batchnorm._BatchNorm):
                chosen.add(id(child))
                after_depthwise = False
    return chosen


def attach_film(model: nn.Module, where: str = "all") -> list[FiLM]:
    """Add a FiLM layer after the BatchNorms (CNN) and every LayerNorm (ViT) of ``model``; returns them.

    ``where="all"``: after every BatchNorm; ``"depthwise"``: FSA's placement (stem,
    depthwise-convolution and head BatchNorms only, see the module docstring).
    """
    if where not in PLACEMENTS:
        raise ValueError(f"unknown FiLM placement {where!r}; use one of {PLACEMENTS}")
    fused = _batchnorm_act_type()
    films: list[FiLM] = []
    chosen = depthwise_batchnorms(model) if where == "depthwise" else None
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.LayerNorm)
        or (
            isinstance(child, nn.modules.batchnorm._BatchNorm)
            and (chosen is None or id(child) in chosen)
        )
    ]
    for parent, name, child in targets:
        if isinstance(child, nn.LayerNorm):
            film = FiLM(child.normalized_shape[-1], channel_dim=-1)
            setattr(parent, name, nn.Sequential(child, film))
        elif fused and isinstance(child, fused):
            film = FiLM(child.num_features, channel_dim=1)
            child.act = nn.Sequential(film, child.act)
        else:
            film = FiLM(child.num_features, channel_dim=1)
            setattr(parent, name, nn.Sequential(child, film))
        films.append(film)
    if not films:
        raise ValueError(f"{type(model).__name__} has no BatchNorm or LayerNorm to modulate")
    return films
