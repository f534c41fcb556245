"""Avalanche strategies as clbench methods: memory bounds, the live cross-check, options."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

from clbench.errors import ClbenchError, ConfigError
from clbench.evaluator import Evaluator
from clbench.learner import seed_everything
from clbench.registry import METHODS, create_method
from tests.synthetic_vit import tiny_context
from tests.test_contract import image_stream

FAST = {"train": {"epochs": 1, "batch_size": 8}}


def run(name: str, **options):
    seed_everything(0)
    learner = create_method(name, **{**FAST, **options})
    evaluation = Evaluator(image_stream(), learner, tiny_context()).run()
    return learner, evaluation


def test_every_required_strategy_is_registered_with_its_options():
    names = {n for n in METHODS.names() if n.startswith("avalanche:")}
    assert {
        f"avalanche:{s}" for s in ("naive", "ewc", "lwf", "si", "replay", "gdumb", "der", "agem")
    } <= names
    ewc = create_method("avalanche:ewc", ewc_lambda=5.0, mode="onlinesum")
    assert ewc.hyperparameters()["ewc_lambda"] == 5.0 and ewc.mode == "onlinesum"
    with pytest.raises(ConfigError, match="has no option"):
        create_method("avalanche:ewc", mem_size=10)


def test_replay_buffer_stays_within_its_size_and_holds_earlier_training_samples():
    learner, _ = run("avalanche:replay", mem_size=5)
    extra = learner.extra_results()
    assert extra["memory"] == {"parameter": "mem_size", "size": 5, "buffer_after_task": [5, 5]}
    buffer = learner.strategy.plugins[0].storage_policy.buffer
    stream = image_stream()
    train = torch.cat([learner.ctx.frozen_features(t.train) for t in stream.tasks])
    stored = torch.stack([buffer[i][0] for i in range(len(buffer))])
    # every stored row is one of the training embeddings (never a test one)
    assert all(torch.isclose(train, row).all(dim=1).any() for row in stored)
    tests = torch.cat([learner.ctx.frozen_features(t.test) for t in stream.tasks])
    assert not any(torch.isclose(tests, row).all(dim=1).any() for row in stored)


def test_crosscheck_agrees_and_is_stored():
    learner, evaluation = run("avalanche:lwf")
    check = learner.extra_results()["avalanche_crosscheck"]
    assert check["cells_compared"] == 3 and check["forgetting_compared"] == 1
    assert check["max_accuracy_difference"] == 0.0 and check["agree"]
    counts = np.array([len(t.test) for t in image_stream().tasks])
    ours = {k: v["clbench"] for k, v in learner.crosscheck.items()}
    assert ours[(1, 0)] == pytest.approx(evaluation.scores[1, 0] / counts[0])


def test_crosscheck_catches_a_corrupted_cell(monkeypatch):
    learner = create_method("avalanche:naive", **FAST)
    check = learner.on_tested

    def corrupted(step, task_index, samples, outputs):
        # clbench's side of the cell now says every prediction is wrong
        wrong = torch.as_tensor((samples.labels + 1) % learner.seen_classes)
        learner._last_outputs = torch.nn.functional.one_hot(wrong, learner.seen_classes).float()
        check(step, task_index, samples, outputs)

    monkeypatch.setattr(learner, "on_tested", corrupted)
    seed_everything(0)
    with pytest.raises(ClbenchError, match=r"accuracy cell \(after task 0, test task 0\)"):
        Evaluator(image_stream(), learner, tiny_context()).run()


def test_der_needs_a_fixed_head_wide_enough():
    with pytest.raises(ConfigError, match="fixed-width head"):
        create_method("avalanche:der", head_width=None)
    seed_everything(0)
    learner = create_method("avalanche:der", head_width=3, **FAST)
    with pytest.raises(ConfigError, match="head_width=4"):  # the stream has 4 classes
        Evaluator(image_stream(), learner, tiny_context()).run()


def test_listing_the_methods_imports_no_model_library():
    """The registry imports every method module on first lookup; a heavy top-level import
    in any of them (Avalanche took 4-7 s) would tax every run, even SimpleCIL's."""
    code = (
        "import sys\n"
        "from clbench.registry import METHODS\n"
        "names = METHODS.names()\n"
        "assert 'avalanche:ewc' in names and 'simplecil' in names, names\n"
        "heavy = ('avalanche', 'torchmetrics', 'timm', 'open_clip', 'transformers', 'peft')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_strategy_signature_is_read_on_first_use():
    factory = METHODS.get("avalanche:ewc").factory
    parameters = inspect.signature(factory).parameters
    assert "ewc_lambda" in parameters and "train_backbone" in parameters
    assert parameters["head_width"].default is None
