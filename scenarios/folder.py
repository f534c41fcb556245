"""Any folder of class sub-folders (the ImageFolder layout), class-incremental.

    ROOT/train/<class>/<image>   and   ROOT/test/<class>/<image>

or, with no train/test sub-folders, ROOT/<class>/<image> split per class by a
fixed seed (``test_fraction``). Class ids index the sorted class folder names,
so the seed-1993 order means what it means in PILOT/PyCIL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clbench.backbones.preprocessing import Preprocessing
from clbench.data import FileLoader, LabelledData, Samples
from clbench.errors import DataMissingError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, class_incremental

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def list_class_folders(root: Path) -> dict[str, list[str]]:
    """Class name -> sorted image paths relative to ``root``'s parent class folders."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            str(f.relative_to(root))
            for f in folder.rglob("*")
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        )
        if images:
            classes[folder.name] = images
    return classes


def read_image_folder(
    root: str | Path, test_fraction: float = 0.2, split_seed: int = 0
) -> LabelledData:
    """Read the ImageFolder layout under ``root`` (see the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataMissingError(
            f"image folder not found: {root}",
            "pass --set scenario.root=PATH, a folder with one sub-folder of images per class",
        )
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_classes = list_class_folders(root / "train")
        test_classes = list_class_folders(root / "test")
        names = sorted(train_classes)
        missing = sorted(set(names) - set(test_classes))
        if missing:
            raise DataMissingError(
                f"{root / 'test'} lacks classes {missing[:5]}",
                "every class needs a train and a test folder",
            )
        train = [(f"train/{k}", names.index(c)) for c in names for k in train_classes[c]]
        test = [(f"test/{k}", names.index(c)) for c in names for k in test_classes[c]]
    else:
        classes = list_class_folders(root)
        names = sorted(classes)
        train, test = [], []
        rng = np.random.RandomState(split_seed)
        for label, name in enumerate(names):
            images = classes[name]
            order = rng.permutation(len(images))
            n_test = int(round(len(images) * test_fraction))
            if len(images) - n_test < 1:
                n_test = len(images) - 1
            test += [(images[i], label) for i in sorted(order[:n_test])]
            train += [(images[i], label) for i in sorted(order[n_test:])]
    if not names:
        raise DataMissingError(
            f"no class folders with images in {root}",
            "expected ROOT/<class>/<image>.jpg (or ROOT/train/<class>/... and ROOT/test/<class>/...)",
        )
    loader = FileLoader(root)
    # The source names the dataset portably (it enters the split hash); the feature
    # cache adds the folder's absolute path itself.
    source = f"folder:{root.name}"
    return LabelledData(
        root.name,
        names,
        Samples(source, [k for k, _ in train], [c for _, c in train], loader),
        Samples(source, [k for k, _ in test], [c for _, c in test], loader),
    )


@register_scenario("folder")
def folder_cil(
    root: str = "",
    init_cls: int | None = None,
    increment: int = 10,
    num_tasks: int | None = None,
    seed: int = 1993,
    shuffle: bool = True,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    crop_pct: float | None = None,
    normalization: str | None = None,
    resize_mode: str | None = None,
    interpolation: str | None = None,
    train_crop_scale: float | None = None,
) -> Scenario:
    """Your own ImageFolder data (--set scenario.root=PATH), class-incremental B/Inc, seed-1993 order.

    ``image_size``, ``crop_pct``, ``normalization``, ``resize_mode`` and
    ``interpolation`` pin the backbone's test-time pipeline for this data, e.g.
    to feed images exactly as a reference implementation does (PILOT: resize
    256, centre-crop 224, bicubic, ``normalization=none``); ``train_crop_scale``
    the smallest area fraction of the training crops (PILOT: 0.05).
    """
    if not root:
        raise DataMissingError(
            "the folder scenario needs a data folder",
            "pass --set scenario.root=PATH (one sub-folder of images per class)",
        )
    data = read_image_folder(root, test_fraction)
    protocol = {"root": str(Path(root).expanduser().resolve())}
    if image_size:
        protocol["image_size"] = image_size
    pinned = {
        "crop_pct": crop_pct,
        "normalization": normalization,
        "resize": resize_mode,
        "interpolation": interpolation,
        "train_crop_scale": train_crop_scale,
    }
    pinned = {k: v for k, v in pinned.items() if v is not None}
    if pinned:
        # Validated now, not at the first image: a typo fails before any work is done.
        Preprocessing(image_size or 224).override(**pinned)
        protocol["preprocessing"] = pinned
    return class_incremental(
        data,
        "folder",
        init_cls=init_cls,
        increment=increment,
        num_tasks=num_tasks,
        seed=seed,
        shuffle=shuffle,
        protocol=protocol,
    )
