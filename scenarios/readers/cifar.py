"""CIFAR-100 from the python pickle archive (``cifar-100-python/{train,test,meta}``)."""

from __future__ import annotations

import pickle
from functools import cache
from pathlib import Path

import numpy as np

from clbench.data import ArrayLoader, LabelledData, Samples
from clbench.download import RemoteFile
from clbench.scenarios.readers.base import DatasetSpec, declare, locate

CIFAR100 = declare(
    DatasetSpec(
        "cifar100",
        "CIFAR-100",
        "cifar-100-python/train",
        files=(
            RemoteFile(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "cifar-100-python.tar.gz",
                "md5:eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
        note="161 MB",
    )
)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def _split(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(folder / part)
    # Rows are 3072 bytes: the red plane, then green, then blue, each 32x32 row-major.
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch["fine_labels"], dtype=np.int64)


@cache
def _read(folder: Path) -> LabelledData:
    names = list(_unpickle(folder / "meta")["fine_label_names"])
    parts = {}
    for part in ("train", "test"):
        images, labels = _split(folder, part)
        keys = np.array([f"{part}/{i}" for i in range(len(labels))], dtype=object)
        parts[part] = Samples(f"cifar100/{part}", keys, labels, ArrayLoader(images))
    return LabelledData("cifar100", names, parts["train"], parts["test"])


def read_cifar100() -> LabelledData:
    """CIFAR-100: 100 fine classes, 50,000 train / 10,000 test, in file order.

    Keys are ``train/<index>`` and ``test/<index>``, the positions in the pickled
    arrays, which is what the CEC few-shot session files index.
    """
    return _read(locate(CIFAR100) / "cifar-100-python")
