"""One fixture per registered scenario, in its real on-disk layout (or its real asset).

The contract test (tests/test_contract.py) builds every registered scenario from
this table, so a new scenario must add its fixture here: a builder that writes
the smallest data the scenario accepts under ``root`` and returns the options to
create it with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clbench.scenarios.readers.fashion_mnist import DEBIAN_FOLDER
from tests.dataset_layouts import (
    cub_classes,
    write_cifar100,
    write_class_tree,
    write_core50,
    write_cub,
    write_domainnet,
    write_png,
)
from tests.helpers import write_image_folder
from tests.instruction_layouts import write_olora, write_superni, write_trace
from tests.mtil_layouts import write_all

Builder = Callable[[Path], dict[str, Any]]


def _cifar(per_class: int = 1, **options: Any) -> Builder:
    def build(root: Path) -> dict[str, Any]:
        write_cifar100(root, train_per_class=per_class)
        return options

    return build


def _cub(per_class: int = 1, **options: Any) -> Builder:
    def build(root: Path) -> dict[str, Any]:
        classes = cub_classes(200)
        files = [(f"{i}.jpg", True) for i in range(per_class)] + [("t.jpg", False)]
        write_cub(root, classes, {c: files for c in classes})
        return options

    return build


def _tree(name: str, classes: int, presplit: bool) -> Builder:
    def build(root: Path) -> dict[str, Any]:
        names = [f"n{c:08d}" for c in range(classes)]
        if presplit:
            write_class_tree(root / name / "train", names, per_class=1)
            write_class_tree(root / name / "test", names, per_class=1, seed=7)
        else:
            write_class_tree(root / name, names, per_class=5)
        return {}

    return build


def _domainnet(root: Path) -> dict[str, Any]:
    from clbench.scenarios.readers.domainnet import DOMAINS

    write_domainnet(root, list(DOMAINS), ["aircraft_carrier", "airplane"], per_class=2)
    return {}


def _core50(root: Path) -> dict[str, Any]:
    write_core50(root, objects=50, per=1)
    return {}


def _miniimagenet(root: Path) -> dict[str, Any]:
    split = root / "miniimagenet" / "split" / "cec"
    split.mkdir(parents=True)
    wnids = [f"n{i:08d}" for i in range(100)]
    for name, per in (("train", 5), ("test", 1)):
        rows = [(f"{w}_{name}{i}.jpg", w) for w in wnids for i in range(per)]
        (split / f"{name}.csv").write_text(
            "filename,label\n" + "".join(f"{f},{w}\n" for f, w in rows)
        )
        write_png(root / "miniimagenet" / "images" / rows[0][0], 0)
    return {"published": False}


def _folder(root: Path) -> dict[str, Any]:
    write_image_folder(root / "mine", {"cat": 4, "dog": 4, "fox": 4})
    return {"root": str(root / "mine"), "increment": 2}


def _fashion_mnist(root: Path) -> dict[str, Any]:
    _need_fashion_mnist()
    return {"train_per_class": 4, "test_per_class": 2}


def _fashion_mnist_and_emoji(root: Path) -> dict[str, Any]:
    _need_fashion_mnist()
    return {"shots": 2, "test_per_class": 2}


def _need_fashion_mnist() -> None:
    if not DEBIAN_FOLDER.exists():
        pytest.skip("apt-get install dataset-fashion-mnist (scripts/ensure_test_deps.sh does)")


def _mtil(root: Path) -> dict[str, Any]:
    write_all(root)
    return {}


def _trace(root: Path) -> dict[str, Any]:
    from clbench.scenarios.readers.instruction_benchmarks import TRACE_TASKS

    write_trace(root, TRACE_TASKS)
    return {"train_per_task": 2, "test_per_task": 2}


def _olora(root: Path) -> dict[str, Any]:
    from clbench.scenarios.readers.instruction_benchmarks import OLORA_TASKS

    write_olora(root, OLORA_TASKS)
    return {"train_per_task": 2, "test_per_task": 2}


def _superni(root: Path) -> dict[str, Any]:
    write_superni(root, ["task1_a", "task2_b"])
    return {"tasks": "task1_a,task2_b", "train_per_task": 2, "test_per_task": 2}


def _asset(**options: Any) -> Builder:
    """Scenarios on the real offline assets (fetched by `clbench setup`)."""
    return lambda _root: options


SCENARIO_FIXTURES: dict[str, Builder] = {
    "bigbench-instruct": _asset(train_per_task=4, test_per_task=4),
    "cifar100": _cifar(),
    "cifar100-b0inc5": _cifar(),
    "cifar100-fscil": _cifar(per_class=5, published=False),
    "core50": _core50,
    "cub200": _cub(),
    "cub200-fscil": _cub(per_class=5, published=False),
    "domainnet": _domainnet,
    "emoji-cil": _asset(),
    "emoji-dil": _asset(),
    "emoji-fscil": _asset(),
    "fashion-mnist": _fashion_mnist,
    "folder": _folder,
    "imagenet-a": _tree("imagenet-a", 200, presplit=False),
    "imagenet-r": _tree("imagenet-r", 200, presplit=False),
    "miniimagenet-fscil": _miniimagenet,
    "mtil": _mtil,
    "mtil-offline": _fashion_mnist_and_emoji,
    "xtail": _mtil,
    "objectnet": _tree("objectnet", 200, presplit=True),
    "olora-benchmark": _olora,
    "omnibenchmark": _tree("omnibenchmark", 300, presplit=True),
    "superni": _superni,
    "trace": _trace,
    "vtab": _tree("vtab", 50, presplit=True),
}
