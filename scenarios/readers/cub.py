"""CUB-200-2011 in its release layout: ``CUB_200_2011/images.txt``,
``image_class_labels.txt``, ``train_test_split.txt`` and ``classes.txt``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from clbench.data import LabelledData
from clbench.download import RemoteFile
from clbench.errors import ClbenchError
from clbench.scenarios.readers.base import DatasetSpec, declare, locate, samples

CUB200 = declare(
    DatasetSpec(
        "cub200",
        "CUB-200-2011",
        "CUB_200_2011/images.txt",
        files=(
            RemoteFile(
                "https://data.caltech.edu/records/65de6-vjr56/files/CUB_200_2011.tgz",
                "CUB_200_2011.tgz",
                "md5:97eceeb196236b17998738112f37df78",
            ),
        ),
        note="1.1 GB, 11,788 images in 200 classes",
    )
)


def _table(path: Path) -> dict[int, str]:
    """``<id> <value>`` lines as {id: value}."""
    if not path.exists():
        raise ClbenchError(f"{path} is missing", "re-fetch CUB-200-2011: `clbench fetch cub200`")
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, value = line.split(" ", 1)
            rows[int(key)] = value.strip()
    return rows


@cache
def _read(root: Path) -> LabelledData:
    folder = root / "CUB_200_2011"
    images = _table(folder / "images.txt")
    labels = _table(folder / "image_class_labels.txt")
    is_train = _table(folder / "train_test_split.txt")
    classes = _table(folder / "classes.txt")
    names = [classes[i] for i in sorted(classes)]
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for image_id in sorted(images):
        part = "train" if is_train[image_id] == "1" else "test"
        # Keys match the CEC few-shot session files: CUB_200_2011/images/<class>/<file>.
        parts[part][0].append(f"CUB_200_2011/images/{images[image_id]}")
        parts[part][1].append(int(labels[image_id]) - 1)
    return LabelledData(
        "cub200",
        names,
        samples("cub200/train", root, *parts["train"]),
        samples("cub200/test", root, *parts["test"]),
    )


def read_cub200() -> LabelledData:
    """CUB-200-2011: 200 bird species, the official 5,994 train / 5,794 test split."""
    return _read(locate(CUB200))
