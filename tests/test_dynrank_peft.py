"""Rank-gated LoRA: the proximal step, the threshold ramp, merging, and step-counted training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clbench.errors import ConfigError
from clbench.methods.peft import count_parameters, freeze
from clbench.methods.peft.dynrank import (
    DynRankAttention,
    DynRankLinear,
    GatedLoRA,
    GateThreshold,
    active_ranks,
    attach_dynrank,
    gates,
    merge_dynrank,
    soft_threshold_,
)
from clbench.training import TrainConfig, fit, make_schedule, tensor_batches
from tests.synthetic_vit import tiny_backbone


def _perturb(model: nn.Module, seed: int = 0) -> None:
    """Give every LoRA factor nonzero values (B starts at zero) so merging has something to add."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GatedLoRA):
                m.lora_b.copy_(torch.randn(m.lora_b.shape, generator=g) * 0.05)
                m.gate[: m.gate.numel() // 2] = 0.0  # half the ranks off


def test_soft_threshold_matches_formula():
    w = torch.tensor([-0.02, -0.005, -0.001, 0.0, 0.0009, 0.004, 0.0101, 0.3])
    kappa = 0.004
    expected = np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - kappa, 0.0)
    soft_threshold_([w], kappa)
    np.testing.assert_allclose(w.numpy(), expected, atol=0, rtol=1e-6)
    assert w[5] == 0 and w[1] == pytest.approx(-0.001) and w[6] == pytest.approx(0.0061)


def test_gated_lora_starts_as_identity_and_computes_b_diag_w_a():
    base = nn.Linear(6, 10)
    layer = DynRankLinear(base, rank=4)
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))  # B is zero
    a = layer.adapters[0]
    assert a.gate.shape == (4,) and a.lora_a.shape == (4, 6) and a.lora_b.shape == (10, 4)
    with torch.no_grad():
        a.lora_b.normal_()
    manual = sum(a.gate[i] * torch.outer(a.lora_b[:, i], a.lora_a[i]) for i in range(4))
    torch.testing.assert_close(a.delta(), manual)
    torch.testing.assert_close(layer(x), base(x) + x @ manual.T)


def test_fused_qkv_gets_one_gated_lora_per_projection():
    net = tiny_backbone(depth=2, dim=24).model
    wrapped = attach_dynrank(net, rank=3)
    qkv = wrapped["blocks.0.attn.qkv"]
    assert isinstance(qkv, DynRankLinear) and len(qkv.adapters) == 3
    assert all(a.lora_b.shape == (24, 3) for a in qkv.adapters)
    # patch_embed.proj is a Conv2d and is left alone; attn.proj, fc1, fc2 are wrapped
    assert "patch_embed.proj" not in wrapped
    assert {"blocks.1.attn.proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"} <= set(wrapped)


def _check_merge(model: nn.Module, inputs, forward, targets=None, rank: int = 4) -> None:
    freeze(model)
    base_count = count_parameters(model, trainable_only=False)
    kwargs = {} if targets is None else {"targets": targets}
    attach_dynrank(model, rank=rank, **kwargs)
    _perturb(model)
    with torch.no_grad():
        unmerged = forward(model, inputs)
    before = active_ranks(model)
    kept = merge_dynrank(model)
    with torch.no_grad():
        merged = forward(model, inputs)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    assert kept == before and all(k == [rank // 2] * len(k) for k in kept.values())
    assert count_parameters(model, trainable_only=False) == base_count
    assert not any(isinstance(m, GatedLoRA) for m in model.modules())


def test_merge_is_exact_on_a_timm_vit():
    net = tiny_backbone(depth=2, dim=24).model.eval()
    x = torch.randn(2, 3, 32, 32)
    _check_merge(net, x, lambda m, x: m(x))


def test_merge_is_exact_on_open_clip_towers():
    from clbench.backbones.openclip import tiny_clip

    clip = tiny_clip().eval()
    images = torch.randn(2, 3, 32, 32)
    texts = torch.randint(1, 400, (3, 16))

    def both(m, inputs):
        return torch.cat([m.encode_image(inputs[0]), m.encode_text(inputs[1])])

    wrapped_probe = tiny_clip()
    wrapped = attach_dynrank(wrapped_probe, rank=2)
    attn = [m for m in wrapped.values() if isinstance(m, DynRankAttention)]
    assert attn and len(attn) == len(
        [m for m in tiny_clip().modules() if isinstance(m, nn.MultiheadAttention)]
    )
    assert all(len(m.adapters) == 4 for m in attn)  # q, k, v, out
    _check_merge(clip, (images, texts), both)


def test_merge_is_exact_on_hugging_face_projections():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    lm = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 7))
    probe = attach_dynrank(LlamaForCausalLM(cfg), rank=2)
    names = {p.rsplit(".", 1)[1] for p in probe}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    _check_merge(lm, ids, lambda m, x: m(input_ids=x).logits)


def test_threshold_ramp_follows_the_reference_schedule():
    w = [torch.ones(4)]
    hook = GateThreshold(w, total_steps=200, max_kappa=0.005, dense_fraction=0.5, levels=50)
    for _ in range(101):
        hook()
    assert torch.equal(w[0], torch.ones(4))  # dense phase: steps 0..100 untouched
    assert hook.kappas == []
    for _ in range(99):
        hook()
    # every 2 steps one level of linspace(0, 0.005, 50); applied from step 101 on
    assert len(hook.kappas) == 99
    assert hook.kappas[0] == pytest.approx(0.005 / 49)
    assert hook.kappas[-1] == pytest.approx(0.005)
    assert all(b >= a for a, b in zip(hook.kappas, hook.kappas[1:], strict=False))
    torch.testing.assert_close(w[0], torch.full((4,), 1 - sum(hook.kappas)))


def test_ranks_only_shrink_during_training_and_across_tasks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    history = []
    for task in range(2):
        freeze(model)
        wrapped = attach_dynrank(model, rank=8, targets=("0", "2"))
        assert all(isinstance(m, DynRankLinear) for m in wrapped.values())
        cfg = TrainConfig(optimizer="adamw", lr=5e-3, max_steps=60, batch_size=16)
        hook = GateThreshold(gates(model), 60, max_kappa=0.5)
        counts = []

        def after(hook=hook, counts=counts):
            hook()
            counts.append(sum(sum(r) for r in active_ranks(model).values()))

        def step(batch):
            logits = model(batch[0])
            return nn.functional.cross_entropy(logits, batch[1]), logits, batch[1]

        fit(model.parameters(), tensor_batches(x, y, batch_size=16, seed=task), step, cfg,
            torch.device("cpu"), after_step=after)  # fmt: skip
        assert len(counts) == 60
        assert all(b <= a for a, b in zip(counts, counts[1:], strict=False))
        assert counts[-1] < counts[0] == 16  # a large kappa switches ranks off
        history.append(merge_dynrank(model))
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))


def test_max_steps_counts_optimizer_steps_and_spans_the_schedule():
    x, y = torch.randn(40, 5), torch.randint(0, 2, (40,))
    model = nn.Linear(5, 2)
    calls = []
    cfg = TrainConfig(max_steps=7, batch_size=16, lr=0.1, warmup_steps=2)  # 3 batches a pass
    log = fit(
        model.parameters(),
        tensor_batches(x, y, batch_size=16, seed=0),
        lambda b: (nn.functional.cross_entropy(model(b[0]), b[1]), None, None),
        cfg,
        torch.device("cpu"),
        after_step=lambda: calls.append(1),
    )
    assert len(calls) == 7 and len(log.epochs) == 3
    # Each epoch logs its last step's rate: steps 2, 5 and 6 (of 0-6, after 2 warm-up steps),
    # i.e. the cosine's start, then 3/5 and 4/5 into it.
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 5)) for k in (3, 4)]
    assert [e.lr for e in log.epochs] == pytest.approx([0.1, *cosine])
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = make_schedule(opt, cfg, steps_per_epoch=3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # warm-up step 1 of 2
    with pytest.warns(UserWarning):  # stepping the schedule alone, on purpose
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        fit(model.parameters(), tensor_batches(x, y, batch_size=16, seed=0), None,
            TrainConfig(max_steps=0), torch.device("cpu"))  # fmt: skip


def test_ungated_variant_is_plain_lora_with_fixed_unit_gates():
    base = nn.Linear(6, 5)
    layer = DynRankLinear(base, rank=3, gated=False)
    a = layer.adapters[0]
    assert torch.equal(a.gate, torch.ones(3)) and not a.gate.requires_grad
    assert gates(layer) == []  # nothing for the threshold to act on
    with torch.no_grad():
        a.lora_b.normal_()
    torch.testing.assert_close(a.delta(), a.lora_b @ a.lora_a)


def test_short_tasks_still_ramp_to_the_maximum():
    w = [torch.ones(2)]
    hook = GateThreshold(w, total_steps=8, max_kappa=0.3, levels=50)
    for _ in range(8):
        hook()
    # 4 steps after the dense phase -> 4 levels linspace(0, 0.3, 4); thresholded at steps 5-7
    assert hook.kappas == pytest.approx([0.2, 0.3, 0.3])
