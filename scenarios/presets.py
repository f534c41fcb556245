"""Class-incremental presets: one per row of the PTM-era anchor table (PROTOCOLS.md).

Each preset is the published protocol by default (B0 Inc``k``, class order
``np.random.seed(1993); permutation`` over the sorted classes, VTAB in its
natural order); ``init_cls``, ``increment`` and ``seed`` can be overridden, and
the result records what was used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clbench.data import LabelledData
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, class_incremental
from clbench.scenarios.readers.cifar import read_cifar100
from clbench.scenarios.readers.cub import read_cub200
from clbench.scenarios.readers.fashion_mnist import read_fashion_mnist
from clbench.scenarios.readers.imagefolders import (
    read_imagenet_a,
    read_imagenet_r,
    read_objectnet,
    read_omnibenchmark,
    read_vtab,
)

#: Backbone input size of the ViT-B/16 protocols.
PTM_IMAGE_SIZE = 224


def preset(
    data: LabelledData,
    name: str,
    init_cls: int | None,
    increment: int,
    seed: int,
    shuffle: bool = True,
    num_classes: int | None = None,
    **protocol,
) -> Scenario:
    """B``init_cls`` Inc``increment`` on ``data``; ``num_classes`` checks the dataset's class count."""
    if num_classes is not None and data.num_classes != num_classes:
        raise ConfigError(
            f"{name} expects {num_classes} classes but {data.name} on disk has {data.num_classes}",
            "check that the dataset is the published version",
        )
    protocol.setdefault("image_size", PTM_IMAGE_SIZE)
    # How the train/test split was made (pre-split folders, a list, or the seeded rule).
    protocol.update(
        {k: v for k, v in data.info.items() if k in ("layout", "split", "split_list_sha256")}
    )
    return class_incremental(
        data,
        name,
        init_cls=init_cls or increment,
        increment=increment,
        seed=seed,
        shuffle=shuffle,
        protocol=protocol,
    )


def _register(
    name: str,
    reader: Callable[[], LabelledData],
    increment: int,
    classes: int,
    description: str,
    shuffle: bool = True,
) -> None:
    def factory(
        init_cls: int | None = None, increment: int = increment, seed: int = 1993
    ) -> Scenario:
        return preset(reader(), name, init_cls, increment, seed, shuffle, classes)

    factory.__name__ = name.replace("-", "_")
    register_scenario(name, description)(factory)


_register(
    "cifar100",
    read_cifar100,
    10,
    100,
    "CIFAR-100, class-incremental B0 Inc10 (10 tasks), seed-1993 order (PILOT README)",
)
_register(
    "cifar100-b0inc5",
    read_cifar100,
    5,
    100,
    "CIFAR-100, class-incremental B0 Inc5 (20 tasks), seed-1993 order (anchor table)",
)
_register(
    "cub200",
    read_cub200,
    10,
    200,
    "CUB-200-2011, class-incremental B0 Inc10 (20 tasks), seed-1993 order, official split",
)
_register(
    "imagenet-r",
    read_imagenet_r,
    20,
    200,
    "ImageNet-R, class-incremental B0 Inc20 (10 tasks), seed-1993 order, fixed 80/20 split",
)
_register(
    "imagenet-a",
    read_imagenet_a,
    20,
    200,
    "ImageNet-A, class-incremental B0 Inc20 (10 tasks), seed-1993 order, fixed 80/20 split",
)
_register(
    "objectnet",
    read_objectnet,
    10,
    200,
    "ObjectNet 200-class subset, class-incremental B0 Inc10 (20 tasks), seed-1993 order (manual download)",
)
_register(
    "omnibenchmark",
    read_omnibenchmark,
    30,
    300,
    "OmniBenchmark 300-class subset, class-incremental B0 Inc30 (10 tasks), seed-1993 order (manual download)",
)
_register(
    "vtab",
    read_vtab,
    10,
    50,
    "VTAB 5 domains x 10 classes, class-incremental B0 Inc10 (5 tasks), natural order (manual download)",
    shuffle=False,
)

#: Fashion-MNIST images are 28 px: 112 px input keeps them cheap yet well above their detail.
FASHION_IMAGE_SIZE = 112


def per_class_subset(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Positions of the first ``per_class`` samples of each class, in file order (all when None)."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return np.sort(keep)


@register_scenario("fashion-mnist")
def fashion_mnist(
    train_per_class: int | None = 200,
    test_per_class: int | None = 100,
    init_cls: int | None = None,
    increment: int = 2,
    seed: int = 1993,
) -> Scenario:
    """Fashion-MNIST, class-incremental B0 Inc2 (5 tasks), 200 train / 100 test per class by default (offline; full set with train_per_class=null)."""
    data = read_fashion_mnist()
    subset = LabelledData(
        data.name,
        data.class_names,
        data.train.subset(per_class_subset(data.train.labels, train_per_class)),
        data.test.subset(per_class_subset(data.test.labels, test_per_class)),
        data.info,
    )
    return preset(
        subset,
        "fashion-mnist",
        init_cls,
        increment,
        seed,
        num_classes=10,
        image_size=FASHION_IMAGE_SIZE,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
    )
