"""SSF (Scaling and Shifting your Features): a per-channel affine after chosen layers.

Each wrapped layer's output is ``y * gamma + beta``, with gamma = 1 and beta = 0
at initialisation (the network is unchanged). On a ViT the layers are the
Linear and LayerNorm layers (and the patch projection), as in the paper; on a
CNN the convolutions and BatchNorms. The channel axis is the last one for
Linear/LayerNorm outputs and axis 1 for convolution/BatchNorm outputs.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNEL_LAST = (nn.Linear, nn.LayerNorm)
CHANNEL_FIRST = (nn.Conv2d, nn.modules.batchnorm._BatchNorm)


def output_channels(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.LayerNorm):
        return layer.normalized_shape[-1]
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return layer.num_features
    raise TypeError(f"SSF does not know the channels of {type(layer).__name__}")


class ChannelAffine(nn.Module):
    """``x * gamma + beta`` per channel (identity at initialisation)."""

    def __init__(self, channels: int, channel_dim: int = -1) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_dim == -1:
            return x * self.gamma + self.beta
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return x * self.gamma.view(shape) + self.beta.view(shape)


class SSF(nn.Module):
    """A layer followed by its SSF scale and shift."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.affine = ChannelAffine(
            output_channels(layer), -1 if isinstance(layer, CHANNEL_LAST) else 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(self.layer(x))


def attach_ssf(
    model: nn.Module, kinds: tuple[type[nn.Module], ...] = CHANNEL_LAST + CHANNEL_FIRST
) -> list[SSF]:
    """Wrap every layer of ``model`` whose type is in ``kinds`` with an SSF affine; returns the wrappers.

    ``model.head`` (a classifier, if any) is left alone: SSF adapts features.
    """
    found = [
        (parent, name, child)
        for parent in model.modules()
        if not isinstance(parent, SSF)
        for name, child in parent.named_children()
        if isinstance(child, kinds) and not (parent is model and name == "head")
    ]
    wrapped = []
    for parent, name, child in found:
        ssf = SSF(child)
        setattr(parent, name, ssf)
        wrapped.append(ssf)
    return wrapped
