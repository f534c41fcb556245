"""Tiny copies of the MTIL datasets in the layouts torchvision unpacks them to, made at test time."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from tests.dataset_layouts import write_cifar100, write_png


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_aircraft(root: Path) -> None:
    base = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]
    base.mkdir(parents=True)
    (base / "variants.txt").write_text("\n".join(variants) + "\n")
    for part, ids in (("train", range(0, 6)), ("test", range(6, 9))):
        lines = [f"{1000000 + i} {variants[i % 3]}" for i in ids]
        (base / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
    for i in range(9):
        write_png(base / "images" / f"{1000000 + i}.jpg", i)


def write_caltech101(root: Path) -> None:
    base = root / "caltech101" / "101_ObjectCategories"
    for c, name in enumerate(["BACKGROUND_Google", "Faces_easy", "accordion", "yin_yang"]):
        for i in range(5):
            write_png(base / name / f"image_{i + 1:04d}.jpg", 10 * c + i)


def write_dtd(root: Path) -> None:
    base = root / "dtd" / "dtd"
    classes = ["banded", "zigzagged"]
    (base / "labels").mkdir(parents=True)
    for part, ids in (("train", range(3)), ("val", range(3, 4)), ("test", range(4, 6))):
        entries = [f"{c}/{c}_{i:04d}.jpg" for c in classes for i in ids]
        (base / "labels" / f"{part}1.txt").write_text("\n".join(entries) + "\n")
    for c in classes:
        for i in range(6):
            write_png(base / "images" / c / f"{c}_{i:04d}.jpg", i)


def write_eurosat(root: Path) -> None:
    for c, name in enumerate(["AnnualCrop", "Forest", "SeaLake"]):
        for i in range(5):
            write_png(root / "eurosat" / "2750" / name / f"{name}_{i + 1}.jpg", 7 * c + i)


def write_flowers(root: Path) -> None:
    from scipy.io import savemat

    base = root / "flowers-102"
    base.mkdir(parents=True)
    labels = np.array([1, 1, 2, 2, 3, 3, 1, 2, 3])  # 1-based, per image id 1..9
    savemat(base / "imagelabels.mat", {"labels": labels})
    savemat(
        base / "setid.mat",
        {"trnid": np.array([1, 3, 5]), "valid": np.array([2, 4, 6]), "tstid": np.array([7, 8, 9])},
    )
    for i in range(1, 10):
        write_png(base / "jpg" / f"image_{i:05d}.jpg", i)


def write_food(root: Path) -> None:
    base = root / "food-101"
    classes = ["apple_pie", "ramen"]
    (base / "meta").mkdir(parents=True)
    for part, ids in (("train", range(3)), ("test", range(3, 5))):
        meta = {c: [f"{c}/{100 + i}" for i in ids] for c in classes}
        (base / "meta" / f"{part}.json").write_text(json.dumps(meta))
    for c in classes:
        for i in range(5):
            write_png(base / "images" / c / f"{100 + i}.jpg", i)


def write_mnist(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def write_oxford_pet(root: Path) -> None:
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("basset_hound", 3, 2)]
    for part, ids in (("trainval", range(1, 4)), ("test", range(4, 6))):
        lines = [f"{b}_{i} {label} {species} 1" for b, label, species in breeds for i in ids]
        (base / "annotations" / f"{part}.txt").write_text("\n".join(lines) + "\n")
    for b, _, _ in breeds:
        for i in range(1, 6):
            write_png(base / "images" / f"{b}_{i}.jpg", i)


def write_cars(root: Path) -> None:
    from scipy.io import savemat

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array(["AM General Hummer SUV 2000", "Audi R8 Coupe 2012"], dtype=object)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    kind = [("fname", "O"), ("class", "O")]
    for mat, folder, n in (
        (base / "devkit" / "cars_train_annos.mat", "cars_train", 4),
        (base / "cars_test_annos_withlabels.mat", "cars_test", 2),
    ):
        rows = np.array([(f"{i + 1:05d}.jpg", i % 2 + 1) for i in range(n)], dtype=kind)
        savemat(mat, {"annotations": rows})
        for i in range(n):
            write_png(base / folder / f"{i + 1:05d}.jpg", i)


def write_sun397(root: Path) -> None:
    base = root / "SUN397"
    base.mkdir(parents=True)
    classes = ["/a/abbey", "/a/apartment_building/outdoor", "/b/beach"]
    (base / "ClassName.txt").write_text("\n".join(classes) + "\n")
    for c, name in enumerate(classes):
        for i in range(5):
            write_png(base / name.lstrip("/") / f"sun_{c}{i:03d}.jpg", 3 * c + i)


def write_all(root: Path) -> None:
    """Every MTIL dataset, CIFAR-100 included (one image per class and split)."""
    for writer in (
        write_aircraft,
        write_caltech101,
        write_dtd,
        write_eurosat,
        write_flowers,
        write_food,
        write_mnist,
        write_oxford_pet,
        write_cars,
        write_sun397,
    ):
        writer(root)
    write_cifar100(root)
