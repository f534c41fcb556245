"""Every class-incremental preset gives the protocol's class order and task sizes
(on fixtures with the real class counts), and no test image is ever trained on."""

from __future__ import annotations

import numpy as np
import pytest

from clbench.errors import ConfigError
from clbench.registry import SCENARIOS, create_scenario
from clbench.scenario import Scenario, class_order
from clbench.scenarios.readers.fashion_mnist import DEBIAN_FOLDER
from tests.dataset_layouts import cub_classes, write_cifar100, write_class_tree, write_cub

ORDER_100 = [68, 56, 78, 8, 23, 84, 90, 65, 74, 76, 40, 89]
ORDER_200 = [168, 136, 51, 9, 183]


def test_seed_1993_class_order_is_pilots():
    assert class_order(100)[:12].tolist() == ORDER_100
    assert class_order(200)[:5].tolist() == ORDER_200
    assert class_order(50, shuffle=False).tolist() == list(range(50))


def assert_no_test_image_trained(scenario: Scenario) -> None:
    train = [f"{t.train.source}:{k}" for t in scenario.tasks for k in t.train.keys]
    test = [f"{t.test.source}:{k}" for t in scenario.tasks for k in t.test.keys]
    assert len(train) == len(set(train)), "a training image appears twice"
    assert not {k.split(":", 1)[1] for k in train} & {k.split(":", 1)[1] for k in test}


def assert_protocol(scenario: Scenario, sizes: list[int], order_prefix: list[int] | None) -> None:
    assert [len(t.classes) for t in scenario.tasks] == sizes
    assert scenario.num_classes == sum(sizes)
    if order_prefix is not None:
        assert scenario.class_order[: len(order_prefix)] == order_prefix
        assert scenario.class_order == class_order(sum(sizes)).tolist()
    for t in scenario.tasks:  # labels of each task are exactly its classes, remapped
        assert set(np.unique(t.train.labels)) == set(t.classes.tolist())
        assert set(np.unique(t.test.labels)) <= set(t.classes.tolist())
    assert_no_test_image_trained(scenario)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    return tmp_path


def test_cifar100_presets(data_root):
    write_cifar100(data_root)
    assert_protocol(create_scenario("cifar100"), [10] * 10, ORDER_100)
    inc5 = create_scenario("cifar100-b0inc5")
    assert_protocol(inc5, [5] * 20, ORDER_100)
    assert inc5.class_names[0] == "fine68"
    assert inc5.protocol["init_cls"] == 5 and inc5.protocol["image_size"] == 224


@pytest.mark.parametrize("name", ["imagenet-r", "imagenet-a"])
def test_imagenet_presets_b0_inc20(data_root, name):
    write_class_tree(data_root / name, [f"n{c:08d}" for c in range(200)], per_class=5)
    scenario = create_scenario(name)
    assert_protocol(scenario, [20] * 10, ORDER_200)
    assert scenario.summary() == {"tasks": 10, "classes": 200, "train": 800, "test": 200}
    assert len(scenario.protocol["split_list_sha256"]) == 64


def test_cub200_preset_b0_inc10(data_root):
    classes = cub_classes(200)
    write_cub(data_root, classes, {c: [("a.jpg", True), ("b.jpg", False)] for c in classes})
    assert_protocol(create_scenario("cub200"), [10] * 20, ORDER_200)


@pytest.mark.parametrize(
    ("name", "classes", "sizes", "shuffled"),
    [
        ("objectnet", 200, [10] * 20, True),
        ("omnibenchmark", 300, [30] * 10, True),
        ("vtab", 50, [10] * 5, False),
    ],
)
def test_presplit_presets(data_root, name, classes, sizes, shuffled):
    names = [f"class{c:03d}" for c in range(classes)]
    write_class_tree(data_root / name / "train", names, per_class=1)
    write_class_tree(data_root / name / "test", names, per_class=1, seed=7)
    scenario = create_scenario(name)
    assert_protocol(scenario, sizes, ORDER_200 if classes == 200 else None)
    expected = class_order(classes, shuffle=shuffled).tolist()
    assert scenario.class_order == expected
    assert scenario.protocol["shuffle"] is shuffled


def test_preset_rejects_a_dataset_with_the_wrong_class_count(data_root):
    write_class_tree(data_root / "vtab" / "train", ["a", "b"], per_class=1)
    write_class_tree(data_root / "vtab" / "test", ["a", "b"], per_class=1)
    with pytest.raises(ConfigError, match="expects 50 classes"):
        create_scenario("vtab")


def test_preset_options_override_the_split(data_root):
    write_cifar100(data_root)
    scenario = create_scenario("cifar100", init_cls=50, increment=25)
    assert [len(t.classes) for t in scenario.tasks] == [50, 25, 25]


@pytest.mark.skipif(not DEBIAN_FOLDER.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_preset_is_a_documented_subset():
    scenario = create_scenario("fashion-mnist")
    assert [t.classes.tolist() for t in scenario.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert scenario.summary() == {"tasks": 5, "classes": 10, "train": 2000, "test": 1000}
    assert scenario.class_order == class_order(10).tolist()
    assert scenario.protocol["image_size"] == 112 and scenario.protocol["train_per_class"] == 200
    assert_no_test_image_trained(scenario)
    full = create_scenario("fashion-mnist", train_per_class=None, test_per_class=None)
    assert full.summary()["train"] == 60000 and full.summary()["test"] == 10000


def test_every_scenario_is_listed_with_its_protocol():
    entries = {e.name: e.description for e in SCENARIOS.entries()}
    expected = {
        "emoji-cil",
        "emoji-dil",
        "emoji-fscil",
        "fashion-mnist",
        "cifar100",
        "cifar100-b0inc5",
        "cub200",
        "imagenet-r",
        "imagenet-a",
        "objectnet",
        "omnibenchmark",
        "vtab",
        "domainnet",
        "core50",
        "cifar100-fscil",
        "cub200-fscil",
        "miniimagenet-fscil",
    }
    assert expected <= set(entries)
    for name in expected:
        description = entries[name]
        assert any(
            word in description for word in ("class-incremental", "domain-incremental", "few-shot")
        ), name
