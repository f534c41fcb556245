"""Small builders shared by tests (real layouts and real objects, made at test time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clbench.data import ArrayLoader, LabelledData, Samples


def array_data(
    num_classes: int, train_per_class: int, test_per_class: int, seed: int = 0, size: int = 8
) -> LabelledData:
    """A labelled dataset of random uint8 images, keys ``train/i`` and ``test/i``."""
    rng = np.random.default_rng(seed)

    def part(name: str, per_class: int) -> Samples:
        labels = np.repeat(np.arange(num_classes), per_class)
        images = rng.integers(0, 255, size=(len(labels), size, size, 3), dtype=np.uint8)
        return Samples(
            f"synthetic/{name}",
            [f"{name}/{i}" for i in range(len(labels))],
            labels,
            ArrayLoader(images),
        )

    return LabelledData(
        "synthetic",
        [f"class{c:03d}" for c in range(num_classes)],
        part("train", train_per_class),
        part("test", test_per_class),
    )


def write_image_folder(root: Path, classes: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """ROOT/<class>/<i>.png with ``classes[name]`` distinct random images each."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root
