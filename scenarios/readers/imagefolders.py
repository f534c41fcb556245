"""Benchmarks distributed as class folders: ImageNet-R, ImageNet-A, ObjectNet,
OmniBenchmark and VTAB, in the layouts the PTM toolboxes (PILOT, EASE, MOS) use.

Two layouts are read:

* pre-split: ``<folder>/train/<class>/*`` and ``<folder>/test/<class>/*``, the
  archives PILOT links for all five (ObjectNet 200 classes, OmniBenchmark 300,
  VTAB 50 = 5 domains x 10 classes);
* original, one folder per class (``imagenet-r/<wnid>/*`` as in Hendrycks'
  ``imagenet-r.tar``): the fixed 80/20 split then comes from a split list
  (``train|test<TAB>key`` lines, checked against its SHA-256) when one is
  shipped in ``scenarios/splits/`` or given, else from clbench's seeded
  per-class rule (seed 0, 20% of each class to test), whose file-list hash is
  recorded in the data's info and so in every result.

Class ids index the sorted class-folder names, which is what the seed-1993
permutation indexes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clbench.data import LabelledData
from clbench.download import RemoteFile
from clbench.errors import ClbenchError
from clbench.scenarios.readers.base import (
    DatasetSpec,
    class_folders,
    declare,
    list_digest,
    locate,
    read_class_folders,
    read_split_list,
    samples,
    seeded_split,
)

SPLITS = Path(__file__).resolve().parent.parent / "splits"
SPLIT_SEED = 0
TEST_FRACTION = 0.2
PILOT = "https://github.com/sun-hailong/LAMDA-PILOT#datasets"

IMAGENET_R = declare(
    DatasetSpec(
        "imagenet-r",
        "ImageNet-R",
        "imagenet-r",
        files=(
            RemoteFile(
                "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar", "imagenet-r.tar"
            ),
        ),
        note="2.1 GB, 30,000 images in 200 classes",
    )
)
IMAGENET_A = declare(
    DatasetSpec(
        "imagenet-a",
        "ImageNet-A",
        "imagenet-a",
        files=(
            RemoteFile(
                "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar", "imagenet-a.tar"
            ),
        ),
        note="0.7 GB, 7,500 images in 200 classes",
    )
)
OBJECTNET = declare(
    DatasetSpec(
        "objectnet",
        "ObjectNet (200-class PTM subset)",
        "objectnet/train",
        page=PILOT,
        note="ObjectNet licence agreement at https://objectnet.dev; the 200-class train/test "
        "archive is the one PILOT links",
    )
)
OMNIBENCHMARK = declare(
    DatasetSpec(
        "omnibenchmark",
        "OmniBenchmark (300-class PTM subset)",
        "omnibenchmark/train",
        page=PILOT,
        note="the 300-class train/test archive PILOT links; source https://github.com/ZhangYuanhan-AI/OmniBenchmark",
    )
)
VTAB = declare(
    DatasetSpec(
        "vtab",
        "VTAB (5 domains x 10 classes)",
        "vtab/train",
        page=PILOT,
        note="the 50-class train/test archive PILOT links (a subset of the VTAB-1k tasks)",
    )
)


def _presplit(root: Path, folder: str, name: str) -> LabelledData:
    classes, train_keys, train_labels = read_class_folders(root, f"{folder}/train")
    test_classes = class_folders(root / folder / "test")
    if not set(test_classes) <= set(classes):
        extra = sorted(set(test_classes) - set(classes))[:5]
        raise ClbenchError(
            f"{root / folder / 'test'} has classes missing from train: {extra}",
            "re-unpack the archive; train/ and test/ must have the same class folders",
        )
    _, test_keys, test_labels = read_class_folders(root, f"{folder}/test", classes)
    return LabelledData(
        name,
        classes,
        samples(f"{name}/train", root, train_keys, train_labels),
        samples(f"{name}/test", root, test_keys, test_labels),
        info={"layout": "pre-split train/ and test/ folders"},
    )


def _original(
    root: Path, folder: str, name: str, split_file: Path | None, split_sha256: str | None
) -> LabelledData:
    classes, keys, labels = read_class_folders(root, folder)
    if split_file is not None:
        split = read_split_list(split_file, split_sha256)
        present = set(keys)
        absent = [k for k in split if k not in present]
        if absent:
            raise ClbenchError(
                f"{len(absent)} images of the split list {split_file} are missing "
                f"under {root / folder}, e.g. {absent[0]}",
                "re-fetch the dataset",
            )
        train_mask = np.array([split.get(k) == "train" for k in keys])
        test_mask = np.array([split.get(k) == "test" for k in keys])
        how = f"split list {split_file.name}"
    else:
        train_mask, test_mask = seeded_split(keys, labels, TEST_FRACTION, SPLIT_SEED)
        how = f"seeded per-class rule (seed {SPLIT_SEED}, {TEST_FRACTION:.0%} test)"
    keys_arr, labels_arr = np.array(keys, dtype=object), np.array(labels)
    listing = sorted(
        [f"train\t{k}" for k in keys_arr[train_mask]] + [f"test\t{k}" for k in keys_arr[test_mask]]
    )
    return LabelledData(
        name,
        classes,
        samples(f"{name}/train", root, list(keys_arr[train_mask]), list(labels_arr[train_mask])),
        samples(f"{name}/test", root, list(keys_arr[test_mask]), list(labels_arr[test_mask])),
        info={
            "layout": "one folder per class",
            "split": how,
            "split_list_sha256": list_digest(listing),
        },
    )


def read_folder_benchmark(
    spec: DatasetSpec, folder: str, split_file: Path | None = None, split_sha256: str | None = None
) -> LabelledData:
    """Read ``folder`` under the data root in either layout (see the module doc)."""
    root = locate(spec)
    if (root / folder / "train").is_dir() and (root / folder / "test").is_dir():
        return _presplit(root, folder, spec.name)
    if spec.manual:
        raise ClbenchError(
            f"{root / folder} has no train/ and test/ folders",
            f"{spec.title} is read in the pre-split layout; see {spec.page}",
        )
    shipped = SPLITS / f"{spec.name}.txt"
    if split_file is None and shipped.exists():
        split_file = shipped
    return _original(root, folder, spec.name, split_file, split_sha256)


def read_imagenet_r(split_file: Path | None = None) -> LabelledData:
    """ImageNet-R: 200 classes, 30,000 renditions, a fixed 80/20 split."""
    return read_folder_benchmark(IMAGENET_R, "imagenet-r", split_file)


def read_imagenet_a(split_file: Path | None = None) -> LabelledData:
    """ImageNet-A: 200 classes, 7,500 natural adversarial images, a fixed 80/20 split."""
    return read_folder_benchmark(IMAGENET_A, "imagenet-a", split_file)


def read_objectnet() -> LabelledData:
    return read_folder_benchmark(OBJECTNET, "objectnet")


def read_omnibenchmark() -> LabelledData:
    return read_folder_benchmark(OMNIBENCHMARK, "omnibenchmark")


def read_vtab() -> LabelledData:
    return read_folder_benchmark(VTAB, "vtab")
