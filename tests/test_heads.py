"""Classifier heads: how a grown head keeps its old rows and starts its new ones."""

import pytest
import torch

from clbench.errors import ConfigError
from clbench.methods.heads import grow_linear
from clbench.registry import create_method


def _old_head() -> torch.nn.Linear:
    old = torch.nn.Linear(64, 3)
    with torch.no_grad():
        old.weight.fill_(7.0)
        old.bias.fill_(-3.0)
    return old


@pytest.mark.parametrize("init", ["default", "trunc-normal"])
def test_grown_head_copies_the_old_rows(init):
    grown = grow_linear(_old_head(), 64, 500, init)
    assert torch.equal(grown.weight[:3], torch.full((3, 64), 7.0))
    assert torch.equal(grown.bias[:3], torch.full((3,), -3.0))


def test_trunc_normal_rows_are_pilots_timm_head_and_default_is_nn_linears():
    torch.manual_seed(0)
    pilot = grow_linear(_old_head(), 64, 500, "trunc-normal")
    default = grow_linear(_old_head(), 64, 500)
    # trunc-normal: std 0.02 and bias 0 (LAMDA-PILOT's heads for SLCA, L2P, DualPrompt)
    assert pilot.weight[3:].std().item() == pytest.approx(0.02, rel=0.03)
    assert torch.count_nonzero(pilot.bias[3:]) == 0
    # nn.Linear's own: uniform in +-1/sqrt(64) = +-0.125 (std 0.125 / sqrt(3)), bias too
    assert default.weight[3:].abs().max().item() <= 0.125
    assert default.weight[3:].std().item() == pytest.approx(0.125 / 3**0.5, rel=0.03)
    assert torch.count_nonzero(default.bias[3:]) == 497


@pytest.mark.parametrize("method", ["slca", "l2p", "dualprompt", "coda_prompt"])
def test_methods_that_train_a_pilot_head_take_head_init(method):
    assert create_method(method, head_init="trunc-normal").head_init == "trunc-normal"
    assert create_method(method).head_init == "default"
    with pytest.raises(ConfigError, match="head_init"):
        create_method(method, head_init="zeros")
