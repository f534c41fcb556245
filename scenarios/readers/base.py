"""What every standard-benchmark reader shares: where the data is, how it is
fetched, and the one message users get when it is not there.

Each dataset is described by a :class:`DatasetSpec`: the file whose presence
means the dataset is unpacked under the data root, the public files that
``clbench fetch NAME`` downloads (resumable, checksum-verified), and, for a
dataset that needs a manual step (licence, size, no public URL), the page to
get it from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clbench import download
from clbench.data import FileLoader, Samples
from clbench.download import RemoteFile, fetch_files
from clbench.errors import ClbenchError, ConfigError, DataMissingError
from clbench.paths import data_root

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

DATASETS: dict[str, DatasetSpec] = {}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    marker: str
    """Path under the data root that exists once the dataset is unpacked."""
    files: tuple[RemoteFile, ...] = ()
    """Public files ``clbench fetch`` downloads and unpacks into the data root."""
    page: str | None = None
    """Where to get it by hand (licence, registration, no direct URL)."""
    note: str | None = None
    """Licence and size, shown in the missing-data message."""
    system_markers: tuple[str, ...] = ()
    """Absolute paths that also count as present (a system package's install location)."""

    def is_present(self, root: Path) -> bool:
        return (root / self.marker).exists() or any(Path(p).exists() for p in self.system_markers)

    @property
    def manual(self) -> bool:
        return not self.files

    def fetch_command(self, root: Path) -> str:
        return f"clbench fetch {self.name} --data-root {root}"


def declare(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the catalogue ``clbench fetch`` knows."""
    DATASETS[spec.name] = spec
    return spec


def missing(spec: DatasetSpec, root: Path, looked: list[Path] | None = None) -> DataMissingError:
    """The one message for an absent dataset: what, where, and how to get it."""
    looked = looked or [root / spec.marker]
    where = ", ".join(str(p) for p in looked)
    message = (
        f"{spec.title} not found: looked for {where} "
        f"(data root {root}, set with --data-root or $CLBENCH_DATA)"
    )
    if spec.manual:
        extra = f" ({spec.note})" if spec.note else ""
        hint = (
            f"download it by hand from {spec.page}{extra} and unpack it so that "
            f"{root / spec.marker} exists"
        )
    else:
        extra = f"; {spec.note}" if spec.note else ""
        hint = f"run `{spec.fetch_command(root)}` (downloads from {spec.files[0].url}{extra})"
    return DataMissingError(message, hint)


def locate(spec: DatasetSpec) -> Path:
    """The data root holding ``spec``, or the missing-data message."""
    root = data_root()
    if not (root / spec.marker).exists():
        raise missing(spec, root)
    return root


def fetch_dataset(
    name: str,
    quiet: bool = False,
    timeout: float = download.TIMEOUT,
    retries: int = download.RETRIES,
) -> Path:
    """Download, verify and unpack a dataset into the data root (no-op when present)."""
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}", f"choose one of {', '.join(sorted(DATASETS))}"
        )
    spec = DATASETS[name]
    root = data_root()
    if spec.is_present(root):
        return root
    if spec.manual:
        raise missing(spec, root)
    fetch_files(spec.files, root, quiet=quiet, timeout=timeout, retries=retries)
    if not (root / spec.marker).exists():
        raise ClbenchError(
            f"{spec.title} was downloaded but {root / spec.marker} is still missing",
            "the archive layout changed; please report it",
        )
    return root


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of ``folder`` (the ImageFolder class list)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_class_folders(
    root: Path, folder: str, classes: list[str] | None = None
) -> tuple[list[str], list[str], list[int]]:
    """Keys (``folder/class/file`` relative to ``root``), labels and class names of an ImageFolder."""
    base = root / folder
    classes = classes or class_folders(base)
    keys: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if not (base / name).is_dir():
            raise ClbenchError(
                f"class folder {base / name} is missing", "re-fetch or re-unpack the dataset"
            )
        files = image_files(base / name)
        keys.extend(f"{folder}/{name}/{f}" for f in files)
        labels.extend([label] * len(files))
    return classes, keys, labels


def samples(
    source: str, root: Path, keys: list[str], labels: list[int], domains: list[str] | None = None
) -> Samples:
    return Samples(
        source,
        np.array(keys, dtype=object),
        np.array(labels, dtype=np.int64),
        FileLoader(root),
        None if domains is None else np.array(domains, dtype=object),
    )


def list_digest(lines: list[str]) -> str:
    """SHA-256 of a file list, one entry a line: the identity of a split."""
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def seeded_split(
    keys: list[str], labels: list[int], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split: each class's sorted files are shuffled with ``seed``
    and the first ``round(test_fraction * n)`` go to test. Returns boolean masks."""
    keys_arr, labels_arr = np.array(keys, dtype=object), np.array(labels)
    test = np.zeros(len(keys), dtype=bool)
    rng = np.random.RandomState(seed)
    for label in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == label)
        members = members[np.argsort(keys_arr[members].astype(str), kind="stable")]
        chosen = rng.permutation(len(members))[: int(round(test_fraction * len(members)))]
        test[members[chosen]] = True
    return ~test, test


def read_split_list(path: Path, expected_sha256: str | None = None) -> dict[str, str]:
    """A split file, ``train|test<TAB>key`` a line; its hash is checked when given."""
    lines = path.read_text().splitlines()
    if expected_sha256 is not None and list_digest(lines) != expected_sha256:
        raise ClbenchError(
            f"split file {path} does not match its recorded hash",
            "delete it; clbench restores the shipped one",
        )
    split: dict[str, str] = {}
    for line in lines:
        part, _, key = line.partition("\t")
        if part not in ("train", "test") or not key:
            raise ClbenchError(f"split file {path} has a malformed line: {line!r}")
        split[key] = part
    return split
