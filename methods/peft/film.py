"""FiLM: per-channel gamma/beta after the normalisation layers (FSA's few-shot adaptation).

On a CNN each BatchNorm output is modulated before its activation: for timm's
fused ``BatchNormAct2d`` the FiLM layer goes between the normalisation and the
activation (``bn.act = Sequential(FiLM, act)``); a plain BatchNorm becomes
``Sequential(bn, FiLM)``. On a ViT every LayerNorm output is modulated.
gamma = 1 and beta = 0 at initialisation, so the network is unchanged.
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


def attach_film(model: nn.Module) -> list[FiLM]:
    """Add a FiLM layer after every BatchNorm (CNN) and LayerNorm (ViT) of ``model``; returns them."""
    fused = _batchnorm_act_type()
    films: list[FiLM] = []
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm))
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
