"""The eleven MTIL datasets in the layouts torchvision unpacks them to (what ZSCL reads).

Every reader takes the torchvision ``root`` (clbench's data root) and reads the
files the matching ``torchvision.datasets`` class reads, with the same splits:

| dataset | under the data root | train / test |
| --- | --- | --- |
| Aircraft | ``fgvc-aircraft-2013b/data/images_variant_{train,test}.txt`` | the lists (variant level) |
| Caltech101 | ``caltech101/101_ObjectCategories/<class>/*.jpg`` | 80/20 ``random_split``, seed 42 |
| CIFAR100 | ``cifar-100-python/`` (clbench's CIFAR reader) | the official split |
| DTD | ``dtd/dtd/labels/{train,test}1.txt``, ``dtd/dtd/images`` | partition 1 |
| EuroSAT | ``eurosat/2750/<class>/*.jpg`` | 80/20 ``random_split``, seed 42 |
| Flowers | ``flowers-102/{jpg,imagelabels.mat,setid.mat}`` | ``trnid`` / ``tstid`` |
| Food | ``food-101/meta/{train,test}.json``, ``food-101/images`` | the lists |
| MNIST | ``MNIST/raw/{train,t10k}-*-idx?-ubyte[.gz]`` | the official split |
| OxfordPet | ``oxford-iiit-pet/annotations/{trainval,test}.txt`` | the lists |
| Cars | ``stanford_cars/devkit/*.mat``, ``cars_{train,test}/`` | the annotation files |
| SUN397 | ``SUN397/ClassName.txt``, ``SUN397/<l>/<class>/sun_*.jpg`` | 80/20 ``random_split``, seed 42 |

The 80/20 splits repeat ZSCL's ``random_split(dataset, [0.8 n, n - 0.8 n],
Generator().manual_seed(42))`` over the dataset's file order (sorted here; the
reference's SUN397 order is whatever ``rglob`` returns, which no filesystem
promises). Class names are the datasets' own, underscores read as spaces (the
reference's ``process_labels``); the reference hand-edits a few lists (e.g.
Caltech101's), which is not reproduced.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from clbench.data import ArrayLoader, LabelledData, Samples
from clbench.errors import ClbenchError
from clbench.scenarios.readers.base import (
    DatasetSpec,
    class_folders,
    declare,
    image_files,
    locate,
    samples,
)
from clbench.scenarios.readers.fashion_mnist import read_idx

ZSCL = "https://github.com/Thunderbeee/ZSCL/blob/main/mtil/datasets.md"


def _spec(name: str, title: str, marker: str, page: str, note: str) -> DatasetSpec:
    return declare(DatasetSpec(name, title, marker, page=page, note=note))


SPECS = {
    "aircraft": _spec(
        "aircraft",
        "FGVC-Aircraft",
        "fgvc-aircraft-2013b/data/images_variant_train.txt",
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        "2.6 GB; torchvision.datasets.FGVCAircraft(root, download=True) unpacks this layout",
    ),
    "caltech101": _spec(
        "caltech101",
        "Caltech-101",
        "caltech101/101_ObjectCategories",
        "https://data.caltech.edu/records/mzrjq-6wc02",
        "130 MB; torchvision.datasets.Caltech101(root, download=True) unpacks this layout",
    ),
    "dtd": _spec(
        "dtd",
        "Describable Textures (DTD)",
        "dtd/dtd/labels/train1.txt",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        "600 MB; torchvision.datasets.DTD(root, download=True) unpacks this layout",
    ),
    "eurosat": _spec(
        "eurosat",
        "EuroSAT (RGB)",
        "eurosat/2750",
        "https://github.com/phelber/EuroSAT",
        "90 MB; torchvision.datasets.EuroSAT(root, download=True) unpacks this layout",
    ),
    "flowers": _spec(
        "flowers",
        "Oxford Flowers-102",
        "flowers-102/setid.mat",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        "330 MB; torchvision.datasets.Flowers102(root, download=True) unpacks this layout",
    ),
    "food": _spec(
        "food",
        "Food-101",
        "food-101/meta/train.json",
        "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
        "5 GB; torchvision.datasets.Food101(root, download=True) unpacks this layout",
    ),
    "mnist": _spec(
        "mnist",
        "MNIST",
        "MNIST/raw",
        "https://yann.lecun.com/exdb/mnist/",
        "11 MB; torchvision.datasets.MNIST(root, download=True) unpacks this layout",
    ),
    "oxford-pet": _spec(
        "oxford-pet",
        "Oxford-IIIT Pet",
        "oxford-iiit-pet/annotations/trainval.txt",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/",
        "800 MB; torchvision.datasets.OxfordIIITPet(root, download=True) unpacks this layout",
    ),
    "cars": _spec(
        "cars",
        "Stanford Cars",
        "stanford_cars/devkit/cars_meta.mat",
        "https://pytorch.org/vision/stable/generated/torchvision.datasets.StanfordCars.html",
        "1.9 GB; the original URLs are gone: follow the torchvision page for the Kaggle copy",
    ),
    "sun397": _spec(
        "sun397",
        "SUN397",
        "SUN397/ClassName.txt",
        "https://vision.princeton.edu/projects/2010/SUN/",
        "37 GB; torchvision.datasets.SUN397(root, download=True) unpacks this layout",
    ),
}


def readable(name: str) -> str:
    return name.replace("_", " ")


def _data(
    name: str,
    root: Path,
    classes: list[str],
    train: tuple[list[str], list[int]],
    test: tuple[list[str], list[int]],
    how: str,
) -> LabelledData:
    if not train[0] or not test[0]:
        raise ClbenchError(
            f"{name}: no images found under {root} for the listed split",
            "re-unpack the dataset in torchvision's layout (see `clbench fetch " + name + "`)",
        )
    return LabelledData(
        name,
        [readable(c) for c in classes],
        samples(f"{name}/train", root, *train),
        samples(f"{name}/test", root, *test),
        info={"split": how},
    )


def zscl_split(n: int, seed: int = 42, ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Indices of torch's ``random_split`` into ``int(ratio n)`` and the rest, as ZSCL draws them."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    cut = int(ratio * n)
    return order[:cut], order[cut:]


def _random_split(
    name: str, root: Path, classes: list[str], keys: list[str], labels: list[int]
) -> LabelledData:
    train, test = zscl_split(len(keys))
    keys_a, labels_a = np.array(keys, dtype=object), np.array(labels)

    def part(index: np.ndarray) -> tuple[list[str], list[int]]:
        return list(keys_a[index]), [int(x) for x in labels_a[index]]

    return _data(name, root, classes, part(train), part(test), "random_split 80/20, seed 42")


def _folders(root: Path, folder: str, classes: list[str]) -> tuple[list[str], list[int]]:
    keys, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(root / folder / name)
        keys += [f"{folder}/{name}/{f}" for f in files]
        labels += [label] * len(files)
    return keys, labels


def read_aircraft() -> LabelledData:
    root = locate(SPECS["aircraft"])
    base = "fgvc-aircraft-2013b/data"
    classes = [c.strip() for c in (root / base / "variants.txt").read_text().splitlines()]
    index = {c: i for i, c in enumerate(classes)}

    def split(part: str) -> tuple[list[str], list[int]]:
        keys, labels = [], []
        for line in (root / base / f"images_variant_{part}.txt").read_text().splitlines():
            image, label = line.strip().split(" ", 1)
            keys.append(f"{base}/images/{image}.jpg")
            labels.append(index[label])
        return keys, labels

    return _data("aircraft", root, classes, split("train"), split("test"), "variant lists")


def read_caltech101() -> LabelledData:
    root = locate(SPECS["caltech101"])
    folder = "caltech101/101_ObjectCategories"
    classes = [c for c in class_folders(root / folder) if c != "BACKGROUND_Google"]
    return _random_split("caltech101", root, classes, *_folders(root, folder, classes))


def read_dtd() -> LabelledData:
    root = locate(SPECS["dtd"])
    base = "dtd/dtd"

    def entries(part: str) -> list[tuple[str, str]]:
        lines = (root / base / "labels" / f"{part}1.txt").read_text().split()
        return [tuple(line.split("/")) for line in lines]

    train, test = entries("train"), entries("test")
    classes = sorted({c for c, _ in train})
    index = {c: i for i, c in enumerate(classes)}

    def split(items: list[tuple[str, str]]) -> tuple[list[str], list[int]]:
        return [f"{base}/images/{c}/{f}" for c, f in items], [index[c] for c, _ in items]

    return _data("dtd", root, classes, split(train), split(test), "partition 1")


def read_eurosat() -> LabelledData:
    root = locate(SPECS["eurosat"])
    folder = "eurosat/2750"
    classes = class_folders(root / folder)
    return _random_split("eurosat", root, classes, *_folders(root, folder, classes))


def read_flowers() -> LabelledData:
    from scipy.io import loadmat
    from torchvision.datasets import Flowers102

    root = locate(SPECS["flowers"])
    base = root / "flowers-102"
    ids = loadmat(base / "setid.mat", squeeze_me=True)
    labels = loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"]

    def split(field: str) -> tuple[list[str], list[int]]:
        chosen = np.atleast_1d(ids[field]).tolist()
        keys = [f"flowers-102/jpg/image_{i:05d}.jpg" for i in chosen]
        return keys, [int(np.atleast_1d(labels)[i - 1]) - 1 for i in chosen]

    # The 102 names are not in the archive; torchvision ships them (the reference's source).
    classes = list(Flowers102.classes)
    return _data("flowers", root, classes, split("trnid"), split("tstid"), "trnid / tstid")


def read_food() -> LabelledData:
    root = locate(SPECS["food"])
    meta = root / "food-101" / "meta"
    train_meta = json.loads((meta / "train.json").read_text())
    classes = sorted(train_meta)

    def split(data: dict[str, list[str]]) -> tuple[list[str], list[int]]:
        keys, labels = [], []
        for label, name in enumerate(classes):
            keys += [f"food-101/images/{p}.jpg" for p in data.get(name, [])]
            labels += [label] * len(data.get(name, []))
        return keys, labels

    test = json.loads((meta / "test.json").read_text())
    return _data("food", root, classes, split(train_meta), split(test), "meta lists")


def read_mnist() -> LabelledData:
    root = locate(SPECS["mnist"])
    raw = root / "MNIST" / "raw"

    def idx(stem: str) -> np.ndarray:
        for path in (raw / stem, raw / f"{stem}.gz"):
            if path.exists():
                return read_idx(path)
        raise ClbenchError(f"{raw / stem} not found", "re-fetch MNIST in torchvision's layout")

    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = idx(f"{prefix}-images-idx3-ubyte")
        labels = idx(f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        keys = np.array([f"{part}/{i}" for i in range(len(labels))], dtype=object)
        parts[part] = Samples(f"mnist/{part}", keys, labels, ArrayLoader(images))
    classes = [str(d) for d in range(10)]
    return LabelledData("mnist", classes, parts["train"], parts["test"], info={"split": "official"})


def read_oxford_pet() -> LabelledData:
    root = locate(SPECS["oxford-pet"])
    base = "oxford-iiit-pet"

    def entries(part: str) -> list[tuple[str, int]]:
        out = []
        for line in (root / base / "annotations" / f"{part}.txt").read_text().splitlines():
            if line.strip():
                image, label, *_ = line.split()
                out.append((image, int(label) - 1))
        return out

    train, test = entries("trainval"), entries("test")
    # Breed names from the image ids (``Abyssinian_12`` -> "Abyssinian"), ordered by label.
    names = dict(sorted({(label, image.rsplit("_", 1)[0]) for image, label in train + test}))
    classes = [" ".join(p.title() for p in names[i].split("_")) for i in sorted(names)]

    def split(items: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
        return [f"{base}/images/{i}.jpg" for i, _ in items], [label for _, label in items]

    return _data("oxford-pet", root, classes, split(train), split(test), "trainval / test lists")


def read_cars() -> LabelledData:
    from scipy.io import loadmat

    root = locate(SPECS["cars"])
    base = root / "stanford_cars"
    classes = [
        str(c) for c in loadmat(base / "devkit" / "cars_meta.mat", squeeze_me=True)["class_names"]
    ]

    def split(annotations: Path, folder: str) -> tuple[list[str], list[int]]:
        if not annotations.exists():
            raise ClbenchError(
                f"{annotations} not found", "unpack Stanford Cars in torchvision's layout"
            )
        rows = np.atleast_1d(loadmat(annotations, squeeze_me=True)["annotations"])
        keys = [f"stanford_cars/{folder}/{row['fname']}" for row in rows]
        return keys, [int(row["class"]) - 1 for row in rows]

    train = split(base / "devkit" / "cars_train_annos.mat", "cars_train")
    test = split(base / "cars_test_annos_withlabels.mat", "cars_test")
    return _data("cars", root, classes, train, test, "annotation files")


def read_sun397() -> LabelledData:
    root = locate(SPECS["sun397"])
    base = root / "SUN397"
    classes = [
        line[3:].strip()
        for line in (base / "ClassName.txt").read_text().splitlines()
        if line.strip()
    ]
    index = {c: i for i, c in enumerate(classes)}
    files = sorted(base.rglob("sun_*.jpg"))
    keys = [str(p.relative_to(root)) for p in files]
    labels = []
    for p in files:
        name = "/".join(p.relative_to(base).parts[1:-1])
        if name not in index:
            raise ClbenchError(f"{p} is in no class of ClassName.txt", "re-unpack SUN397")
        labels.append(index[name])
    return _random_split("sun397", root, classes, keys, labels)


def read_cifar100_mtil() -> LabelledData:
    from clbench.scenarios.readers.cifar import read_cifar100

    data = read_cifar100()
    return LabelledData(
        "cifar100", [readable(c) for c in data.class_names], data.train, data.test, data.info
    )


#: MTIL order (ZSCL): each dataset's reader.
MTIL_ORDER: dict[str, Callable[[], LabelledData]] = {
    "aircraft": read_aircraft,
    "caltech101": read_caltech101,
    "cifar100": read_cifar100_mtil,
    "dtd": read_dtd,
    "eurosat": read_eurosat,
    "flowers": read_flowers,
    "food": read_food,
    "mnist": read_mnist,
    "oxford-pet": read_oxford_pet,
    "cars": read_cars,
    "sun397": read_sun397,
}
#: The text prompt of each dataset's class names: the first of ZSCL's templates per
#: dataset (CLIP's prompt-engineering set), the one CoDyRA's code uses (``template[0]``).
#: One generic "a photo of a {}." changes zero-shot MTIL scores (MNIST's digits most).
PROMPT_TEMPLATES: dict[str, str] = {
    "aircraft": "a photo of a {}, a type of aircraft.",
    "caltech101": "a photo of a {}.",
    "cifar100": "a photo of a {}.",
    "dtd": "a photo of a {} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "flowers": "a photo of a {}, a type of flower.",
    "food": "a photo of a {}, a type of food.",
    "mnist": 'a photo of the number: "{}".',
    "oxford-pet": "a photo of a {}, a type of pet.",
    "cars": "a photo of a {}, a type of car.",
    "sun397": "a photo of a {}.",
}
#: X-TAIL: the same datasets without CIFAR100.
XTAIL_ORDER = [d for d in MTIL_ORDER if d != "cifar100"]
