"""dynrank's gate update: the paper's proximal step by default, CoDyRA's code on request."""

from __future__ import annotations

import pytest
import torch

import clbench.methods.dynrank as dynrank_method
from clbench.errors import ConfigError
from clbench.evaluator import Evaluator
from clbench.methods.dynrank import DynRank
from clbench.methods.peft.dynrank import GateThreshold, reference_threshold_, soft_threshold_
from tests.synthetic_vit import tiny_context
from tests.test_dynrank_method import FAST, _scenario

GATES = [0.5, 1.5, 2.5, -1.5, -2.5, 1.0, -0.2]


def test_reference_rule_also_cuts_gates_below_twice_kappa():
    paper, code = torch.tensor(GATES), torch.tensor(GATES)
    soft_threshold_([paper], 1.0)
    reference_threshold_([code], 1.0)
    assert paper.tolist() == pytest.approx([0.0, 0.5, 1.5, -0.5, -1.5, 0.0, 0.0])
    # |w| in (kappa, 2 kappa): shrunk below kappa, then zeroed; |w| == kappa is left as is
    assert code.tolist() == pytest.approx([0.0, 0.0, 1.5, 0.0, -1.5, 1.0, 0.0])


def test_threshold_hook_applies_the_chosen_rule():
    w = [torch.tensor([1.5e-4, 3e-4, -1.5e-4, 1.0])]
    hook = GateThreshold(
        w, total_steps=4, max_kappa=1e-4, dense_fraction=0.5, levels=2, rule="reference"
    )
    for _ in range(4):
        hook()
    # one thresholded step (step 3, kappa 1e-4): 1.5e-4 -> 0.5e-4 -> 0; 3e-4 -> 2e-4 kept
    assert w[0].tolist() == pytest.approx([0.0, 2e-4, 0.0, 1.0 - 1e-4], abs=1e-7)
    with pytest.raises(ValueError, match="gate rule"):
        GateThreshold(w, total_steps=4, rule="hard")


def test_dynrank_passes_its_gate_rule_to_the_threshold(monkeypatch):
    rules = []
    own = dynrank_method.GateThreshold

    def recorded(*args):
        rules.append(args[-1])
        return own(*args)

    monkeypatch.setattr(dynrank_method, "GateThreshold", recorded)
    learner = DynRank(rank=4, max_kappa=0.05, gate_rule="reference", train=FAST)
    Evaluator(_scenario("class-incremental"), learner, tiny_context(depth=1)).run()
    assert rules == ["reference", "reference"]
    assert learner.extra_results()["gate_rule"] == "reference"
    assert DynRank().gate_rule == "paper"
    with pytest.raises(ConfigError, match="gate_rule"):
        DynRank(gate_rule="hard")
