"""PEFT modules: identity at initialisation, only their own parameters train, counts by formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import clbench.backbones  # noqa: F401  (makes torchvision, hence timm, importable on CPU torch)
from clbench.methods import peft
from clbench.training import TrainConfig, fit, tensor_batches

DIM, DEPTH, HEADS, PATCH, SIZE = 48, 3, 3, 8, 32


def small_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer  # after clbench's torchvision fix

    torch.manual_seed(0)
    # LayerScale as in DINOv2; init_values large enough that the blocks matter.
    return VisionTransformer(
        img_size=SIZE,
        patch_size=PATCH,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        init_values=0.5,
        num_classes=0,
    ).eval()


def small_cnn() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def attach_adapter(m):
    return peft.attach_adapters(m, bottleneck=8)


def attach_lora(m):
    return peft.attach_lora(m, rank=4)


IDENTITY_AT_INIT = {
    "adapter": (small_vit, attach_adapter, DEPTH * (2 * DIM * 8 + 8 + DIM)),
    "lora": (small_vit, attach_lora, DEPTH * 4 * (DIM * 4 + DIM * 2 + DIM * 5 + DIM * 5)),
    # qkv 3D + proj D + fc1 4D + fc2 D + norm1 D + norm2 D per block; patch conv D, final norm D.
    "ssf-vit": (small_vit, peft.attach_ssf, 2 * (DEPTH * 11 * DIM + 2 * DIM)),
    "film-vit": (small_vit, peft.attach_film, 2 * DIM * (2 * DEPTH + 1)),
}


def bn_channels(model: nn.Module) -> int:
    return sum(
        m.num_features for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )


def conv_bn_channels(model: nn.Module) -> int:
    return bn_channels(model) + sum(
        m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)
    )


@pytest.mark.parametrize("name", list(IDENTITY_AT_INIT) + ["film-cnn", "ssf-cnn"])
def test_identity_at_init_and_parameter_count(name):
    if name.endswith("cnn"):
        build = small_cnn
        attach = peft.attach_film if name == "film-cnn" else peft.attach_ssf
        expected = 2 * (
            bn_channels(small_cnn()) if name == "film-cnn" else conv_bn_channels(small_cnn())
        )
    else:
        build, attach, expected = IDENTITY_AT_INIT[name]
    model = build()
    x = images()
    with torch.no_grad():
        before = model(x)
    peft.freeze(model)
    attach(model)
    model.eval()
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert peft.count_parameters(model) == expected


@pytest.mark.parametrize("deep", [False, True])
def test_vpt_counts_and_changes_output(deep):
    model = small_vit()
    x = images()
    with torch.no_grad():
        before = model(x)
    peft.freeze(model)
    peft.attach_vpt(model, num_prompts=5, deep=deep)
    with torch.no_grad():
        after = model(x)
    assert after.shape == before.shape  # prompt tokens are dropped before pooling
    assert not torch.allclose(after, before)  # prompts are attended: VPT is not identity at init
    assert peft.count_parameters(model) == (DEPTH if deep else 1) * 5 * DIM


ATTACHERS = {
    "adapter": (small_vit, attach_adapter, (peft.Adapter,)),
    "lora": (small_vit, attach_lora, (peft.LoRALinear,)),
    "vpt_deep": (small_vit, lambda m: peft.attach_vpt(m, 4, deep=True), (peft.PromptedBlocks,)),
    "ssf": (small_vit, peft.attach_ssf, (peft.ChannelAffine,)),
    "film-cnn": (small_cnn, peft.attach_film, (peft.FiLM,)),
}


def own_parameter_names(model: nn.Module, kinds) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, kinds):
            names |= {
                f"{prefix}.{n}"
                for n, p in module.named_parameters()
                if "base." not in n and "blocks." not in n
            }
    return names


@pytest.mark.parametrize("name", list(ATTACHERS))
def test_trains_only_its_own_parameters(name):
    build, attach, kinds = ATTACHERS[name]
    model = build()
    peft.freeze(model)
    attach(model)
    own = own_parameter_names(model, kinds)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == own and own
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = nn.Linear(model.num_features, 3)
    x, y = images(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def step(batch):
        xb, yb = batch
        logits = head(model(xb))
        return nn.functional.cross_entropy(logits, yb), logits, yb

    fit(
        list(model.parameters()) + list(head.parameters()),
        tensor_batches(x, y, batch_size=4, seed=0),
        step,
        TrainConfig(epochs=1, lr=0.1, optimizer="adam"),
        torch.device("cpu"),
        modules=[model, head],
        eval_modules=peft.batchnorms(model),
    )
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= own
    for n, b in model.named_buffers():  # frozen BatchNorm statistics stayed put
        if "running" in n:
            assert torch.equal(b, dict(build().named_buffers())[n])


def test_adapter_branch_replaced_by_user_module():
    model = small_vit()
    peft.freeze(model)
    blocks = peft.attach_adapters(model, bottleneck=4, blocks=[1, 2])
    assert list(peft.adapted_blocks(model)) == [1, 2] and len(blocks) == 2

    class Doubler(nn.Module):
        def forward(self, x):
            return 0 * x + 1.0

    old = peft.set_branch(model, 2, Doubler())
    assert isinstance(old, peft.Adapter)
    plain = small_vit()
    with torch.no_grad():
        assert not torch.allclose(model(images()), plain(images()))
    peft.detach_adapters(model)
    with torch.no_grad():
        torch.testing.assert_close(model(images()), plain(images()))
    peft.attach_adapters(model, blocks=[0])
    with pytest.raises(ValueError, match="already"):
        peft.attach_adapters(model, blocks=[0])


def test_adapter_factory_and_lora_merge():
    model = small_vit()
    seen = []
    peft.attach_adapters(model, factory=lambda i, d: _ZeroBranch(seen, i, d))
    assert seen == [(i, DIM) for i in range(DEPTH)]
    lora_model = small_vit()
    wrappers = peft.attach_lora(lora_model, rank=2)
    with torch.no_grad():
        for w in wrappers:
            w.lora_b.normal_()
        adapted = lora_model(images())
    peft.merge_lora(lora_model)
    assert not any(isinstance(m, peft.LoRALinear) for m in lora_model.modules())
    with torch.no_grad():
        torch.testing.assert_close(lora_model(images()), adapted, rtol=1e-4, atol=1e-4)


class _ZeroBranch(nn.Module):
    def __init__(self, seen, i, d):
        super().__init__()
        seen.append((i, d))

    def forward(self, x):
        return torch.zeros_like(x)


def test_errors_are_clear():
    with pytest.raises(TypeError, match="timm ViT"):
        peft.attach_adapters(small_cnn())
    with pytest.raises(ValueError, match="rank"):
        peft.LoRALinear(nn.Linear(3, 3), rank=0)
    with pytest.raises(ValueError, match="no BatchNorm"):
        peft.attach_film(nn.Sequential(nn.Linear(3, 3)))
