"""The prompt methods' selection log: what test images chose, and the warning for untrained keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clbench.methods.dualprompt import DualPrompt
from clbench.methods.l2p import L2P
from tests.synthetic_vit import synthetic_task, tiny_context

DEPTH = 5  # DualPrompt's E-prompts go up to block 4


@pytest.fixture(scope="module")
def learned():
    """A DualPrompt after one task of 2 classes x 4 images, and that task's test set."""
    torch.manual_seed(0)
    learner = DualPrompt(pool_size=3, train={"epochs": 1, "batch_size": 4})
    learner.setup(tiny_context(DEPTH))
    first, test0 = synthetic_task(0, [0, 1], 2, per_class=4)
    learner.learn(first)
    return learner, test0


def _point_every_query_at(learner: DualPrompt, test, prompt: int) -> None:
    """Make ``prompt``'s key the test queries' mean direction and the other keys its opposite."""
    mean = F.normalize(learner.ctx.frozen_features(test), dim=1).mean(0)
    with torch.no_grad():
        learner.pool.keys.copy_(-mean.expand_as(learner.pool.keys))
        learner.pool.keys[prompt] = mean


def _tested(learner: DualPrompt, test) -> dict:
    learner.selection_log = []
    learner.on_tested(0, 0, test, learner.predict(test))
    (record,) = learner.selection_log
    return record


def test_training_counts_the_forced_prompt_of_each_row(learned):
    learner, _ = learned
    # DualPrompt trains task t's E-prompt only: 8 rows chose prompt 0, none the others
    assert learner.train_choices.tolist() == [8, 0, 0]


def test_log_counts_the_test_choices_against_the_nearest_key(learned):
    learner, test = learned
    record = _tested(learner, test)
    queries = F.normalize(learner.ctx.frozen_features(test), dim=1)
    nearest = (queries @ F.normalize(learner.pool.keys.detach(), dim=1).T).argmax(dim=1)
    assert record["samples"] == len(test.keys)
    assert record["chosen"] == torch.bincount(nearest, minlength=3).tolist()
    assert record["own_prompt"] == int((nearest == 0).sum())
    assert record["untrained"] == int((nearest != 0).sum())


def test_images_routed_to_their_own_prompt_raise_no_warning(learned):
    learner, test = learned
    _point_every_query_at(learner, test, 0)
    record = _tested(learner, test)
    assert record["own_prompt"] == record["samples"] and record["untrained"] == 0
    assert learner.extra_results()["warnings"] == []


def test_images_routed_to_an_untrained_prompt_warn(learned):
    learner, test = learned
    _point_every_query_at(learner, test, 2)
    record = _tested(learner, test)
    assert record["own_prompt"] == 0 and record["untrained"] == record["samples"]
    (warning,) = learner.extra_results()["warnings"]
    assert f"{record['samples']} of {record['samples']} test images (100%)" in warning


def test_l2p_counts_an_image_untrained_only_when_all_its_prompts_are():
    torch.manual_seed(0)
    learner = L2P(pool_size=4, top_k=2, length=2, train={"epochs": 1, "batch_size": 4})
    learner.setup(tiny_context(DEPTH))
    first, test = synthetic_task(0, [0, 1], 2, per_class=4)
    learner.learn(first)
    assert int(learner.train_choices.sum()) == 16  # 8 training rows x top-2 slots
    mean = F.normalize(learner.ctx.frozen_features(test), dim=1).mean(0)

    def tested_on(pair: list[int]) -> dict:
        with torch.no_grad():  # ``pair`` become every query's two nearest keys
            learner.pool.keys.copy_(-mean.expand_as(learner.pool.keys))
            learner.pool.keys[pair] = mean
        learner.selection_log = []
        learner.on_tested(0, 0, test, learner.predict(test))
        return learner.selection_log[0]

    learner.train_choices = torch.tensor([8, 8, 0, 0])
    untrained_pair = tested_on([2, 3])
    assert untrained_pair["chosen"] == [0, 0, len(test.keys), len(test.keys)]
    assert untrained_pair["untrained"] == len(test.keys)
    assert "own_prompt" not in untrained_pair  # L2P's prompts belong to no task
    assert tested_on([1, 2])["untrained"] == 0  # one trained prompt of two is routing


def test_run_command_prints_the_runs_warnings(monkeypatch, capsys):
    import clbench.cli.run as cli_run
    from clbench.cli import build_parser

    class Result:
        extra = {"warnings": ["dualprompt: the keys did not learn"]}

        def to_json(self) -> str:
            return "{}"

    monkeypatch.setattr(cli_run, "run", lambda spec, store, resume: Result())
    args = build_parser().parse_args(["run", "--json", "--no-store"])
    assert cli_run.run_command(args) == 0
    assert "clbench: warning: dualprompt: the keys did not learn" in capsys.readouterr().err
