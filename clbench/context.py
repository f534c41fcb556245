"""What a learner receives from the run: device, backbone, feature cache, seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from clbench.backbones import Backbone
from clbench.data import Inputs, Samples
from clbench.features import FeatureCache


@dataclass
class RunContext:
    """Shared resources of one run. Learners must not modify ``backbone`` in place:
    methods that adapt the network call ``new_backbone()`` for their own copy."""

    backbone: Backbone
    cache: FeatureCache
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 1993
    batch_size: int = 64

    def frozen_features(self, samples: Samples | Inputs) -> torch.Tensor:
        """Embeddings of the frozen pretrained backbone, served from the feature cache."""
        return self.features(self.backbone, self.backbone.cache_id, samples)

    def features(
        self,
        model: torch.nn.Module,
        extractor_id: str,
        samples: Samples | Inputs,
        transform=None,
        persist: bool = True,
    ) -> torch.Tensor:
        """Embeddings of any frozen ``model`` cached under ``extractor_id``.

        Callers must give each distinct network its own id; a network that exists
        only in this run (an adapted copy) passes ``persist=False``.
        """
        # The model is moved to the device only if something must be extracted
        # (inside the cache): a warm run never touches it.
        return self.cache.get(
            model,
            extractor_id,
            samples,
            transform or self.backbone.transform(train=False),
            self.device,
            self.batch_size,
            persist=persist,
        )

    def new_backbone(self) -> Backbone:
        """A trainable copy of the pretrained backbone on the run's device."""
        return self.backbone.fresh_copy().to(self.device)
