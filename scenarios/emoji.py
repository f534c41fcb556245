"""Emoji images by vendor (npm ``emoji-datasource-*`` 16.0.0): real labelled data offline.

Classes are emoji subcategories (``animal-mammal``, ``transport-ground`` ...)
with at least ``min_per_class`` emoji; country flags (one template, 259 near-
identical classes members) and the skin-tone ``Component`` swatches are left
out. Half of each subcategory's emoji are held out as the test set, so a test
image is an emoji never seen in training, not another view of a seen one.

Google (Apache-2.0) and Twitter (CC-BY-4.0) styles are fetched by default;
Apple and Facebook images are proprietary and fetched only on explicit opt-in,
never redistributed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np

from clbench.assets import NpmAsset, fetch_npm
from clbench.data import FileLoader, LabelledData, Samples
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, class_incremental

EMOJI_VERSION = "16.0.0"
FREE_VENDORS = ("google", "twitter")
PROPRIETARY_VENDORS = ("apple", "facebook")
EMOJI_ASSETS = {
    "google": "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
    "twitter": "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
    "apple": "sha512-dVYjsK0FnCry9F+PBtnivhG2K0xdwlmqYaSgiUtztUdAGPYiHYhZcVKvNBqC791g2qyEcFNTBO6utg4eQ3uLTw==",
    "facebook": "sha512-b9ZxJdB7nMWGckH1vyCjPSosaa6MJYuojPPFiQ0LmDIZS8vlG454XKcmTFKrXIMAA72O4MRJMYFhvWI8pjyciQ==",
}
EXCLUDED_SUBCATEGORIES = {"country-flag", "skin-tone"}
EXCLUDED_CATEGORIES = {"Component"}
#: Emoji are 64 px images: a 112 px input keeps all their detail at a quarter of 224's cost.
EMOJI_IMAGE_SIZE = 112
#: The train/test split is part of the dataset, not of a run: fixed seed, independent of --seed.
SPLIT_SEED = 0


def emoji_asset(vendor: str) -> NpmAsset:
    if vendor not in EMOJI_ASSETS:
        raise ConfigError(
            f"unknown emoji vendor {vendor!r}", f"choose one of {', '.join(EMOJI_ASSETS)}"
        )
    return NpmAsset(f"emoji-datasource-{vendor}", EMOJI_VERSION, EMOJI_ASSETS[vendor])


def fetch_emoji(vendor: str = "google", allow_proprietary: bool = False) -> Path:
    """The unpacked npm package of one vendor; proprietary styles need opt-in."""
    if vendor in PROPRIETARY_VENDORS and not allow_proprietary:
        raise ConfigError(
            f"the {vendor} emoji images are proprietary and are fetched only on explicit opt-in",
            "pass --set scenario.allow_proprietary=true if you accept their licence (never redistribute them)",
        )
    return fetch_npm(emoji_asset(vendor)) / "package"


@cache
def _catalogue(package: Path) -> list[dict]:
    return json.loads((package / "emoji.json").read_text())


def emoji_classes(package: Path, vendor: str, min_per_class: int = 6) -> dict[str, list[str]]:
    """Subcategory -> image file names (sorted by emoji order) for one vendor."""
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for emoji in _catalogue(package):
        if (
            emoji.get(f"has_img_{vendor}")
            and emoji["subcategory"] not in EXCLUDED_SUBCATEGORIES
            and emoji["category"] not in EXCLUDED_CATEGORIES
        ):
            groups[emoji["subcategory"]].append((emoji["sort_order"], emoji["image"]))
    return {
        name: [img for _, img in sorted(items)]
        for name, items in sorted(groups.items())
        if len(items) >= min_per_class
    }


def shared_classes(
    vendors: tuple[str, ...], min_per_class: int = 6, allow_proprietary: bool = False
) -> dict[str, list[str]]:
    """Subcategory -> the emoji images every vendor in ``vendors`` has on disk.

    Passing this as ``classes=`` to :func:`read_emoji` gives all vendors one label
    set and the same per-class image lists, hence the same held-out emoji: an
    emoji in any vendor's test set is in no vendor's training set.
    """
    per_vendor = []
    for vendor in vendors:
        package = fetch_emoji(vendor, allow_proprietary)
        image_dir = package / "img" / vendor / "64"
        per_vendor.append(
            {
                name: {img for img in images if (image_dir / img).exists()}
                for name, images in emoji_classes(package, vendor, 1).items()
            }
        )
    reference = emoji_classes(fetch_emoji(vendors[0], allow_proprietary), vendors[0], 1)
    shared = {}
    for name, images in reference.items():
        kept = [
            img for img in images if all(img in classes.get(name, ()) for classes in per_vendor)
        ]
        if len(kept) >= min_per_class:
            shared[name] = kept
    return shared


def split_images(images: list[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """Half of a class's emoji (rounded down) to test, the rest to train, by a fixed shuffle."""
    order = np.random.RandomState(seed).permutation(len(images))
    test_count = len(images) // 2
    test = sorted(images[i] for i in order[:test_count])
    train = sorted(images[i] for i in order[test_count:])
    return train, test


def read_emoji(
    vendor: str = "google",
    min_per_class: int = 6,
    allow_proprietary: bool = False,
    classes: dict[str, list[str]] | None = None,
) -> LabelledData:
    """Emoji subcategories of one vendor as labelled data with held-out emoji as test.

    ``classes`` fixes the class list (and the images per class) from another vendor,
    so that several vendors share one label set (the domain-incremental stream).
    """
    package = fetch_emoji(vendor, allow_proprietary)
    classes = classes or emoji_classes(package, vendor, min_per_class)
    image_dir = package / "img" / vendor / "64"
    names = sorted(classes)
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(names):
        available = [img for img in classes[name] if (image_dir / img).exists()]
        for part, images in zip(("train", "test"), split_images(available), strict=True):
            parts[part][0].extend(images)
            parts[part][1].extend([label] * len(images))
    source = f"emoji-{vendor}@{EMOJI_VERSION}"
    loader = FileLoader(image_dir)
    train = Samples(
        source,
        parts["train"][0],
        parts["train"][1],
        loader,
        domains=[vendor] * len(parts["train"][0]),
    )
    test = Samples(
        source, parts["test"][0], parts["test"][1], loader, domains=[vendor] * len(parts["test"][0])
    )
    return LabelledData(
        f"emoji-{vendor}",
        names,
        train,
        test,
        info={"version": EMOJI_VERSION, "vendor": vendor, "image_size": EMOJI_IMAGE_SIZE},
    )


@register_scenario("emoji-cil")
def emoji_cil(
    vendor: str = "google",
    num_tasks: int | None = 10,
    init_cls: int | None = None,
    increment: int | None = None,
    seed: int = 1993,
    min_per_class: int = 6,
    allow_proprietary: bool = False,
) -> Scenario:
    """Emoji subcategories, class-incremental, held-out emoji as test (offline, 87 classes, 10 tasks)."""
    data = read_emoji(vendor, min_per_class, allow_proprietary)
    if increment is not None:
        num_tasks = None
    return class_incremental(
        data,
        "emoji-cil",
        init_cls=init_cls,
        increment=increment or 10,
        num_tasks=num_tasks,
        seed=seed,
        protocol={
            "image_size": EMOJI_IMAGE_SIZE,
            "vendor": vendor,
            "test": "half of each subcategory's emoji, held out",
        },
    )
