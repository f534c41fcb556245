"""CalibratedLinear: an nn.Linear on the measured-fastest CPU product, with the same
outputs and gradients as torch's, the same parameters, and torch's path where the
calibrated one does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clbench.kernels import products
from clbench.kernels.linear import CalibratedLinear, accelerate_linears


def pair(bias: bool, seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(seed)
    plain = nn.Linear(48, 20, bias=bias)
    fast = nn.Linear(48, 20, bias=bias)
    fast.load_state_dict(plain.state_dict())
    assert accelerate_linears(fast) == 1
    return plain, fast


@pytest.mark.parametrize("library", products.available_libraries())
@pytest.mark.parametrize("bias", [True, False])
def test_outputs_and_gradients_equal_torch_on_every_library(monkeypatch, library, bias):
    monkeypatch.setenv("CLBENCH_MATMUL", library)
    plain, fast = pair(bias)
    x = torch.randn(3, 7, 48, requires_grad=True)  # a (batch, tokens, features) input
    x_fast = x.detach().clone().requires_grad_(True)
    out, out_fast = plain(x), fast(x_fast)
    assert out_fast.shape == (3, 7, 20)
    torch.testing.assert_close(out_fast, out, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(x_fast.grad, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)


def test_frozen_weights_get_no_gradient_and_torch_forced_is_bit_identical(monkeypatch):
    monkeypatch.setenv("CLBENCH_MATMUL", "torch")
    plain, fast = pair(bias=True)
    fast.weight.requires_grad_(False)
    x = torch.randn(5, 48, requires_grad=True)
    out = fast(x)
    assert torch.equal(out, plain(x))
    # a frozen layer does not keep its input alive for the backward (LoRA's memory)
    assert out.grad_fn.saved_tensors[0] is None
    out.sum().backward()
    assert fast.weight.grad is None and x.grad is not None
    torch.testing.assert_close(x.grad, fast.weight.sum(0).expand(5, 48))


def test_other_dtypes_and_autocast_take_torchs_own_forward(monkeypatch):
    monkeypatch.setenv("CLBENCH_MATMUL", "numpy")  # would fail on bfloat16 operands
    plain, fast = pair(bias=True)
    x = torch.randn(4, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x).dtype == torch.bfloat16
        torch.testing.assert_close(fast(x), plain(x))
    doubled = fast.double()
    assert doubled(x.double()).dtype == torch.float64


def test_a_model_keeps_its_parameters_and_stays_an_nn_linear():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert accelerate_linears(model) == 2
    assert accelerate_linears(model) == 0  # already converted
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2][0]))
    assert all(type(m) is CalibratedLinear for m in (model[0], model[2][0]))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
