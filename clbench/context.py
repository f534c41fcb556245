"""What a learner receives from the run: device, backbone, feature cache, seed."""

from __future__ import annotations

import torch

from clbench.backbones import Backbone
from clbench.backbones.descriptor import BackboneDescriptor, LazyBackbone
from clbench.data import Inputs, Samples
from clbench.features import Deferred, FeatureCache


class RunContext:
    """Shared resources of one run. Learners must not modify ``backbone`` in place:
    methods that adapt the network call ``new_backbone()`` for their own copy.

    ``backbone`` may be given lazy (a :class:`LazyBackbone`, what a run gets when a
    previous one described it): the network is then built on the first access to
    ``backbone`` or the first frozen feature missing from the cache, so a method
    that only reads cached frozen features never builds it.
    """

    def __init__(
        self,
        backbone: Backbone | LazyBackbone,
        cache: FeatureCache,
        device: torch.device | None = None,
        seed: int = 1993,
        batch_size: int = 64,
    ) -> None:
        self._backbone = backbone
        self.cache = cache
        self.device = device if device is not None else torch.device("cpu")
        self.seed = seed
        self.batch_size = batch_size

    @property
    def backbone(self) -> Backbone:
        """The pretrained network (built here on first access when it was lazy)."""
        if isinstance(self._backbone, LazyBackbone):
            return self._backbone.network()
        return self._backbone

    @property
    def backbone_info(self) -> Backbone | BackboneDescriptor:
        """What the run records and keys the feature cache by (``name``, ``weights_id``,
        ``cache_id``, ``preprocessing``, ``feature_dim``, ``parameter_count``,
        ``transform()``), read without building the network."""
        if isinstance(self._backbone, LazyBackbone):
            return self._backbone.descriptor
        return self._backbone

    @property
    def backbone_built(self) -> bool:
        """Whether the network exists in this run (always, unless it was lazy)."""
        return not isinstance(self._backbone, LazyBackbone) or self._backbone.built

    def frozen_features(self, samples: Samples | Inputs) -> torch.Tensor:
        """Embeddings of the frozen pretrained backbone, served from the feature cache."""
        network: Deferred[torch.nn.Module] = Deferred(lambda: self.backbone)
        return self.features(network, self.backbone_info.cache_id, samples)

    def features(
        self,
        model: torch.nn.Module | Deferred[torch.nn.Module],
        extractor_id: str,
        samples: Samples | Inputs,
        transform=None,
        persist: bool = True,
    ) -> torch.Tensor:
        """Embeddings of any frozen ``model`` cached under ``extractor_id``.

        Callers must give each distinct network its own id; a network that exists
        only in this run (an adapted copy) passes ``persist=False``.
        """
        if transform is None:
            info = self.backbone_info
            transform = Deferred(lambda: info.transform(train=False))
        # The model (and transform) are made and moved to the device only if something
        # must be extracted (inside the cache): a warm run never touches them.
        return self.cache.get(
            model,
            extractor_id,
            samples,
            transform,
            self.device,
            self.batch_size,
            persist=persist,
        )

    def new_backbone(self) -> Backbone:
        """A trainable copy of the pretrained backbone on the run's device."""
        return self.backbone.fresh_copy().to(self.device)
