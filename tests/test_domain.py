"""Domain-incremental scenarios: one label set over a stream of domains, tested on seen
and unseen domains; the metrics stay defined when later tasks share task 0's test set."""

from __future__ import annotations

import numpy as np
import pytest

from clbench import metrics
from clbench.registry import create_scenario
from clbench.scenarios.readers.domainnet import DOMAINS
from tests.dataset_layouts import write_core50, write_domainnet
from tests.test_presets import assert_no_test_image_trained


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    return tmp_path


def test_domainnet_stream_follows_the_protocol_order(data_root):
    write_domainnet(
        data_root, list(DOMAINS), ["aircraft_carrier", "airplane", "alarm_clock"], per_class=2
    )
    scenario = create_scenario("domainnet")
    assert scenario.kind == "domain-incremental" and scenario.evaluate_unseen
    assert [t.domain for t in scenario.tasks] == [
        "real",
        "quickdraw",
        "painting",
        "sketch",
        "infograph",
        "clipart",
    ]
    for task in scenario.tasks:
        assert task.classes.tolist() == [0, 1, 2] and task.seen_classes == 3
        assert set(task.test.domains) == {task.domain}
        assert len(task.test) == 6
    assert_no_test_image_trained(scenario)


def test_core50_trains_on_eight_sessions_and_tests_on_the_held_out_three(data_root):
    write_core50(data_root, objects=50, per=1)
    scenario = create_scenario("core50")
    assert [t.domain for t in scenario.tasks] == ["s1", "s2", "s4", "s5", "s6", "s8", "s9", "s11"]
    assert scenario.num_classes == 50
    assert [len(t.train) for t in scenario.tasks] == [50] * 8
    assert len(scenario.tasks[0].test) == 150 and all(len(t.test) == 0 for t in scenario.tasks[1:])
    assert set(scenario.tasks[0].test.domains) == {"s3", "s7", "s10"}
    assert_no_test_image_trained(scenario)


def test_metrics_with_test_data_on_task_zero_only():
    # CORe50's shape: every row tests the shared held-out set (task 0's column).
    counts = np.array([100, 0, 0])
    correct = np.array([[60, 0, 0], [70, 0, 0], [65, 0, 0]])
    out = metrics.summarize(correct, counts)
    assert out["last_acc_sample"] == pytest.approx(0.65)
    assert out["avg_acc_sample"] == pytest.approx(0.65)
    assert out["last_acc_task"] == pytest.approx(0.65)
    assert out["forgetting_pilot"] == pytest.approx(0.05)
    assert all(np.isfinite(v) for v in out.values())


def test_emoji_dil_shares_one_label_set_and_holds_out_the_same_emoji():
    scenario = create_scenario("emoji-dil")
    google, twitter = scenario.tasks
    assert (google.domain, twitter.domain) == ("google", "twitter")
    assert scenario.evaluate_unseen and scenario.kind == "domain-incremental"
    assert google.classes.tolist() == twitter.classes.tolist() == list(range(scenario.num_classes))
    assert scenario.num_classes == 87
    # The same emoji (file names) are held out in both vendors, with the same labels.
    assert google.test.keys.tolist() == twitter.test.keys.tolist()
    assert google.test.labels.tolist() == twitter.test.labels.tolist()
    trained = set(google.train.keys) | set(twitter.train.keys)
    assert not trained & (set(google.test.keys) | set(twitter.test.keys))


def test_emoji_proprietary_vendors_need_opt_in():
    from clbench.errors import ConfigError

    with pytest.raises(ConfigError, match="proprietary"):
        create_scenario("emoji-dil", vendors=["google", "apple"])
