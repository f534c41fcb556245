"""Labelled samples as readers produce them, before any task split.

A sample is identified by a stable string key (a path relative to the dataset
root, or ``split/index`` for array-backed data). Keys are what the feature cache
and the split hash are computed from, so they never depend on where a user keeps
the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from clbench.errors import ClbenchError


class ImageLoader(Protocol):
    """Turns a sample key into an RGB PIL image. Loaders of large files also take
    ``min_side`` (see ``FileLoader``): the shorter side the transform resizes to."""

    def __call__(self, key: str) -> Image.Image: ...


#: Files up to this size are also content-hashed for the feature cache (cheap: one
#: read of a small file); larger ones are identified by size and modification time.
HASHED_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class FileLoader:
    """Loads ``root / key`` with PIL; transparent images are put on white."""

    root: Path
    #: Files are decoded (worth worker processes) and can be reduced while decoding.
    reduces_at_decode = True

    def __call__(self, key: str, min_side: int | None = None) -> Image.Image:
        """The image; with ``min_side``, possibly reduced at decode time to a shorter side
        of no less than ``REDUCE_GAP x min_side`` (see ``reduce_at_decode``)."""
        path = Path(self.root) / key
        try:
            with Image.open(path) as img:
                return reduce_at_decode(img, min_side)
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


#: An image is reduced at decode time only to a shorter side of at least this many times
#: what the transform resizes to, so the final bicubic resample still sees 3x more
#: pixels than it keeps (Pillow's ``reducing_gap`` guidance: indistinguishable from a
#: full-resolution resample in most cases). Images under 3x the target are untouched.
REDUCE_GAP = 3


def reduce_at_decode(img: Image.Image, min_side: int | None) -> Image.Image:
    """Make decode cost follow the output size, not the file size: a JPEG decodes at
    1/2, 1/4 or 1/8 scale straight from its DCT (``draft``), any other format is box-
    reduced by an integer factor (``reduce``) before the transform's resample."""
    floor = REDUCE_GAP * (min_side or 0)
    if not min_side or min(img.size) < 2 * floor:
        return to_rgb(img)  # not even a factor of 2 to gain
    if img.format == "JPEG":
        img.draft(img.mode, (floor, floor))  # before decoding; keeps both sides >= floor
    rgb = to_rgb(img)  # alpha composited at full size, then averaged down
    factor = min(rgb.size) // floor
    return rgb.reduce(factor) if factor >= 2 else rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of an image; alpha is composited on white, not dropped to black."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


#: What a learner's ``predict`` must return for a test set, by the task's scorer:
#: a (n, classes) score tensor, one score per answer choice, or generated text.
OutputKind = Literal["class-scores", "choice-scores", "text"]


def _objects(values) -> np.ndarray | None:
    """An object array (one entry per sample) without numpy splitting tuples into columns."""
    if values is None:
        return None
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@dataclass(frozen=True, eq=False)
class Inputs:
    """What a learner sees of a test set: inputs only, never labels, answers or domains.

    Images: ``keys`` through ``loader``. Text: ``prompts`` (instruction and input as one
    string) and, for multiple-choice tasks, ``choices`` (a tuple of strings per sample).
    ``output`` says what ``predict`` must return (the task's scorer decides). Only in a
    task-incremental scenario, where the task identity is given anyway, ``classes`` and
    ``class_names`` name the tested task's label space (CLIP-style methods build text
    prompts from them, with the dataset's ``prompt_template`` where it has one).
    """

    source: str
    keys: np.ndarray
    loader: ImageLoader | None = None
    prompts: np.ndarray | None = None
    choices: np.ndarray | None = None
    output: OutputKind = "class-scores"
    classes: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    prompt_template: str | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def modality(self) -> str:
        return "text" if self.prompts is not None else "image"

    def subset(self, index: np.ndarray | Sequence[int]) -> Inputs:
        index = np.asarray(index)
        return replace(
            self,
            keys=self.keys[index],
            prompts=None if self.prompts is None else self.prompts[index],
            choices=None if self.choices is None else self.choices[index],
        )


@dataclass(frozen=True, eq=False)
class Samples:
    """A labelled set: inputs (images by key, or text records) and their targets.

    ``source`` names the dataset and split (for example ``emoji-16.0.0/google/train``);
    together with a key it identifies a sample across runs. Targets: ``labels`` (a
    class id; for multiple-choice text, the index of the correct choice; -1 where a
    text sample has only reference ``answers``), ``answers`` (reference strings per
    text sample) and ``domains``. ``inputs()`` is the view a learner gets at test time.
    """

    source: str
    keys: np.ndarray
    labels: np.ndarray
    loader: ImageLoader | None = None
    domains: np.ndarray | None = None
    prompts: np.ndarray | None = None
    choices: np.ndarray | None = None
    answers: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", np.asarray(self.keys, dtype=object))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if len(self.keys) != len(self.labels):
            raise ValueError("keys and labels differ in length")
        for name in ("domains", "prompts", "choices", "answers"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != len(self.keys):
                    raise ValueError(f"keys and {name} differ in length")
                object.__setattr__(self, name, _objects(value))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def modality(self) -> str:
        return "text" if self.prompts is not None else "image"

    def subset(self, index: np.ndarray | Sequence[int]) -> Samples:
        """The samples at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return replace(
            self,
            keys=self.keys[index],
            labels=self.labels[index],
            domains=pick(self.domains),
            prompts=pick(self.prompts),
            choices=pick(self.choices),
            answers=pick(self.answers),
        )

    def relabel(self, mapping: np.ndarray) -> Samples:
        """The same samples with ``labels`` replaced by ``mapping[labels]``."""
        return replace(self, labels=mapping[self.labels])

    def inputs(self, output: OutputKind = "class-scores", **label_space) -> Inputs:
        """The test-time view: inputs only (``label_space``: task-IL ``classes``/``class_names``)."""
        return Inputs(
            self.source, self.keys, self.loader, self.prompts, self.choices, output, **label_space
        )

    def ids(self) -> list[str]:
        """Globally unique ids: source and key."""
        return [f"{self.source}:{k}" for k in self.keys]


def concat_samples(parts: Sequence[Samples]) -> Samples:
    """One Samples of several parts from the same dataset split.

    Parts belong together when their ``source`` (dataset and split) and, for files,
    their folder agree; loader objects are not compared, since a part restored from a
    checkpoint holds an equal copy of the loader, not the same object.
    """
    first = parts[0]

    def origin(part: Samples) -> tuple[str, object]:
        return part.source, getattr(part.loader, "root", None)

    if any(origin(p) != origin(first) for p in parts):
        raise ClbenchError(
            "cannot join samples of different sources",
            "joining (joint training, replay) needs parts of one dataset split",
        )

    def join(name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return replace(
        first,
        keys=np.concatenate([p.keys for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        domains=join("domains"),
        prompts=join("prompts"),
        choices=join("choices"),
        answers=join("answers"),
    )


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
