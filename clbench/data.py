"""Labelled samples as readers produce them, before any task split.

A sample is identified by a stable string key (a path relative to the dataset
root, or ``split/index`` for array-backed data). Keys are what the feature cache
and the split hash are computed from, so they never depend on where a user keeps
the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from clbench.errors import ClbenchError


class ImageLoader(Protocol):
    """Turns a sample key into an RGB PIL image."""

    def __call__(self, key: str) -> Image.Image: ...


#: Files up to this size are also content-hashed for the feature cache (cheap: one
#: read of a small file); larger ones are identified by size and modification time.
HASHED_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class FileLoader:
    """Loads ``root / key`` with PIL; transparent images are put on white."""

    root: Path

    def __call__(self, key: str) -> Image.Image:
        path = Path(self.root) / key
        try:
            with Image.open(path) as img:
                return to_rgb(img)
        except FileNotFoundError as exc:
            raise ClbenchError(f"image file not found: {path}", "re-fetch the dataset") from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ClbenchError(
                f"cannot decode image {path}: {exc}",
                "remove or replace the corrupt file, then run again",
            ) from exc

    def fingerprint(self, key: str) -> str:
        """What changes when the file's content does: size and modification time, plus a
        content hash for small files (an overwrite within one timestamp tick keeping the
        size is then still seen)."""
        path = Path(self.root) / key
        try:
            stat = path.stat()
            digest = ""
            if stat.st_size <= HASHED_FILE_BYTES:
                digest = hashlib.blake2b(path.read_bytes(), digest_size=12).hexdigest()
        except OSError as exc:
            raise ClbenchError(
                f"cannot read image file {path}: {exc.strerror or exc}", "re-fetch the dataset"
            ) from exc
        return f"{stat.st_size}:{stat.st_mtime_ns}:{digest}"


@dataclass(frozen=True, eq=False)
class ArrayLoader:
    """Serves images from an in-memory uint8 array (N, H, W) or (N, H, W, C).

    Keys are ``f"{prefix}/{index}"``.
    """

    images: np.ndarray

    def __call__(self, key: str) -> Image.Image:
        index = int(key.rsplit("/", 1)[1])
        return to_rgb(Image.fromarray(self.images[index]))

    def fingerprint(self, key: str) -> str:
        """A hash of the image's pixels (in memory, so always affordable)."""
        index = int(key.rsplit("/", 1)[1])
        return hashlib.blake2b(self.images[index].tobytes(), digest_size=12).hexdigest()


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of an image; alpha is composited on white, not dropped to black."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True, eq=False)
class Samples:
    """A labelled set of images: keys, integer labels, optional domain names.

    ``source`` names the dataset and split (for example ``emoji-16.0.0/google/train``);
    together with a key it identifies an image across runs.
    """

    source: str
    keys: np.ndarray
    labels: np.ndarray
    loader: ImageLoader
    domains: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", np.asarray(self.keys, dtype=object))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if len(self.keys) != len(self.labels):
            raise ValueError("keys and labels differ in length")
        if self.domains is not None:
            object.__setattr__(self, "domains", np.asarray(self.domains, dtype=object))

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, index: np.ndarray | Sequence[int]) -> Samples:
        """The samples at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        return Samples(
            self.source,
            self.keys[index],
            self.labels[index],
            self.loader,
            None if self.domains is None else self.domains[index],
        )

    def relabel(self, mapping: np.ndarray) -> Samples:
        """The same samples with ``labels`` replaced by ``mapping[labels]``."""
        return Samples(self.source, self.keys, mapping[self.labels], self.loader, self.domains)

    def ids(self) -> list[str]:
        """Globally unique ids: source and key."""
        return [f"{self.source}:{k}" for k in self.keys]


@dataclass(frozen=True)
class LabelledData:
    """What a dataset reader returns: named classes and a train and a test set.

    Labels in ``train`` and ``test`` index ``class_names``. Readers never decide
    task splits; scenario generators do.
    """

    name: str
    class_names: list[str]
    train: Samples
    test: Samples
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
