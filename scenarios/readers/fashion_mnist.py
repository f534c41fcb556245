"""Fashion-MNIST from its idx files: the Debian package location first
(``apt-get install dataset-fashion-mnist`` puts them in /usr/share/datasets/fashion-mnist),
then the data root, where ``clbench fetch fashion-mnist`` downloads the public files."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np

from clbench.data import ArrayLoader, LabelledData, Samples
from clbench.download import RemoteFile
from clbench.errors import ClbenchError
from clbench.paths import data_root
from clbench.scenarios.readers.base import DatasetSpec, declare, missing

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CLASSES = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]

FASHION_MNIST = declare(
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST",
        "fashion-mnist/train-images-idx3-ubyte.gz",
        files=tuple(
            RemoteFile(f"{MIRROR}/{name}", name, f"md5:{md5}", extract=False, into="fashion-mnist")
            for name, md5 in FILES.items()
        ),
        note="30 MB, MIT licence; or `apt-get install dataset-fashion-mnist`",
        system_markers=(str(DEBIAN_FOLDER / "train-images-idx3-ubyte.gz"),),
    )
)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped): big-endian dims after a 4-byte magic."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ClbenchError(f"{path} is not an unsigned-byte idx file", "re-fetch Fashion-MNIST")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ClbenchError(
            f"{path} is truncated ({data.size} of {int(np.prod(dims))} values)",
            "re-fetch Fashion-MNIST",
        )
    return data.reshape(dims)


def find_fashion_mnist() -> Path:
    """The folder with the four idx files: the Debian location, else the data root."""
    candidates = [DEBIAN_FOLDER, data_root() / "fashion-mnist"]
    for folder in candidates:
        if all((folder / name).exists() for name in FILES):
            return folder
    raise missing(FASHION_MNIST, data_root(), candidates)


@cache
def _read(folder: Path) -> LabelledData:
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        keys = np.array([f"{part}/{i}" for i in range(len(labels))], dtype=object)
        parts[part] = Samples(
            f"fashion-mnist/{part}", keys, labels, ArrayLoader(np.ascontiguousarray(images))
        )
    return LabelledData(
        "fashion-mnist", list(CLASSES), parts["train"], parts["test"], info={"folder": str(folder)}
    )


def read_fashion_mnist() -> LabelledData:
    """Fashion-MNIST: 10 classes, 60,000 train / 10,000 test 28x28 grayscale images."""
    return _read(find_fashion_mnist())
