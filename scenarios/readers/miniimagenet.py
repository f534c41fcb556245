"""miniImageNet: ``miniimagenet/images/<file>.jpg`` with csv splits
``miniimagenet/split/<name>.csv`` (``filename,label`` with a header line), the
layout of Ravi & Larochelle's release and of the CEC few-shot code.

The images come from ImageNet and are not publicly downloadable; the csv files
of the CEC few-shot protocol (100 classes, 500 train / 100 test each) are
fetched from the CEC repository, pinned by commit and SHA-256.
"""

from __future__ import annotations

from pathlib import Path

from clbench.data import LabelledData
from clbench.download import RemoteFile, fetch_files
from clbench.errors import ClbenchError
from clbench.scenarios.readers.base import DatasetSpec, declare, locate, samples

MINIIMAGENET = declare(
    DatasetSpec(
        "miniimagenet",
        "miniImageNet",
        "miniimagenet/images",
        page="https://github.com/yaoyao-liu/mini-imagenet-tools",
        note="ImageNet terms of access; 60,000 84x84 images of 100 classes",
    )
)
CEC_COMMIT = "3a5d335f19349aa2e5fa75c88aa2c701b6e5513d"
CEC_RAW = f"https://raw.githubusercontent.com/icoz69/CEC-CVPR2021/{CEC_COMMIT}/data/index_list"
CEC_SPLITS = (
    RemoteFile(
        f"{CEC_RAW}/mini_imagenet/train.csv",
        "train.csv",
        "sha256:6e1b0901693e2e872d8b72c311dda2afd05da93e6ca2cc16b5f742be4b18c2fc",
        extract=False,
        into="miniimagenet/split/cec",
    ),
    RemoteFile(
        f"{CEC_RAW}/mini_imagenet/test.csv",
        "test.csv",
        "sha256:02516c97275c6f28a9f088cf1e67bfda0081c9ebbf28d6de5216a09f8f656b0c",
        extract=False,
        into="miniimagenet/split/cec",
    ),
)


def read_csv(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise ClbenchError(
            f"miniImageNet split file {path} is missing",
            "put the csv splits in miniimagenet/split/ under the data root",
        )
    rows = []
    for line in path.read_text().splitlines()[1:]:
        if line.strip():
            name, label = line.strip().split(",")
            rows.append((name, label))
    return rows


def read_miniimagenet(train_csv: str = "cec/train", test_csv: str = "cec/test") -> LabelledData:
    """Labelled data from two csv splits; class ids follow the first appearance of
    each label in the train csv (as the CEC loader assigns them)."""
    root = locate(MINIIMAGENET)
    split_dir = root / "miniimagenet" / "split"
    if train_csv.startswith("cec/") and not (split_dir / f"{train_csv}.csv").exists():
        fetch_files(CEC_SPLITS, root)
    train_rows, test_rows = (
        read_csv(split_dir / f"{train_csv}.csv"),
        read_csv(split_dir / f"{test_csv}.csv"),
    )
    classes = list(dict.fromkeys(label for _, label in train_rows))
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({label for _, label in test_rows} - set(index))
    if unknown:
        raise ClbenchError(
            f"{test_csv}.csv has classes absent from {train_csv}.csv: {unknown[:3]}",
            "pair a train and a test csv over the same classes",
        )
    parts = {}
    for part, rows in (("train", train_rows), ("test", test_rows)):
        parts[part] = samples(
            f"miniimagenet/{part}",
            root,
            [f"miniimagenet/images/{n}" for n, _ in rows],
            [index[label] for _, label in rows],
        )
    return LabelledData("miniimagenet", classes, parts["train"], parts["test"])
