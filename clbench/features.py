"""The on-disk feature cache behind the frozen-feature fast path.

Embeddings of a frozen network are stored per (backbone cache id, sample
source), one folder each, as append-only shards: a shard is an ``.npy`` matrix
plus the keys of its rows, written atomically. A request loads the shards,
extracts only the keys no shard holds yet, and writes those as a new shard, so
each image is embedded once per (backbone, weights, transform, dataset split)
however many tasks, methods or runs ask for it.

Many processes may share one cache (``clbench sweep`` workers, Ray tasks on a
shared file system). Every file appears under its final name by an atomic
rename, so no reader sees a torn shard; and extraction into a folder holds an
exclusive ``flock`` on it, re-reading the shards other processes wrote while
it waited, so an image is embedded once even when several workers ask for it
at the same moment (where ``fcntl`` is missing, duplicate work is the only cost).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent workers may duplicate work
    fcntl = None

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clbench.data import Inputs, Samples
from clbench.learner import rng_untouched
from clbench.progress import progress

T = TypeVar("T")

#: Version of the on-disk layout, part of every folder name: shards of an older layout
#: (keys without content fingerprints) are never read.
FORMAT = "features-v2"


class Deferred(Generic[T]):
    """A value made only when asked for: what a request served wholly from the cache never
    needs (the network, its transform), so a warm run does not build it."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make

    def get(self) -> T:
        return self._make()


def resolve(value: T | Deferred[T]) -> T:
    return value.get() if isinstance(value, Deferred) else value


class ImageDataset(Dataset):
    """Images as a torch Dataset: (image tensor, label) for training, the tensor alone
    for ``labelled=False`` (embedding test inputs, which carry no labels)."""

    def __init__(self, samples: Samples | Inputs, transform, labelled: bool = True) -> None:
        self.samples = samples
        self.transform = transform
        self.labelled = labelled
        # File loaders reduce images much larger than the transform's resize while decoding.
        size = getattr(transform, "decode_size", None)
        self.load_kwargs = {"min_side": size} if size and decodes_files(samples) else {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        key = self.samples.keys[index]
        image = self.transform(self.samples.loader(key, **self.load_kwargs))
        return (image, int(self.samples.labels[index])) if self.labelled else image


def decodes_files(samples: Samples | Inputs) -> bool:
    """Whether the samples' images are decoded from files (worth worker processes)."""
    return bool(getattr(samples.loader, "reduces_at_decode", False))


def decode_workers(samples: Samples | Inputs, batch_size: int) -> int:
    """Worker processes that decode images while the network runs.

    ``CLBENCH_DECODE_WORKERS`` sets the number (0: decode in the main process).
    Otherwise: none for in-memory arrays or fewer than two batches (starting a
    worker costs more than it saves), else one per core, the forward pass keeping
    the cores left over (at least one thread). Measured on 2 cores, 120 large
    PNG/JPEG images (``benchmarks/large_images.py --splits``, reports/large-images.md):
    0 workers x 2 threads 6.37 s, 1 x 1 6.24 s, 2 x 1 4.22 s.
    """
    forced = os.environ.get("CLBENCH_DECODE_WORKERS")
    if forced is not None:
        try:
            return max(0, int(forced))
        except ValueError:
            from clbench.errors import ConfigError

            raise ConfigError(
                f"CLBENCH_DECODE_WORKERS={forced!r} is not a number of processes",
                "set it to 0 (decode in the main process) or a positive integer",
            ) from None
    if not decodes_files(samples) or len(samples) < 2 * batch_size:
        return 0
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _forward_threads(workers: int) -> Iterator[None]:
    """Leave the decoding workers their cores: the forward pass gets the rest."""
    before = torch.get_num_threads()
    if workers:
        torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def embed_samples(
    model: torch.nn.Module,
    samples: Samples | Inputs,
    transform,
    device: torch.device,
    batch_size: int = 64,
    desc: str = "features",
) -> torch.Tensor:
    """Embed every sample with ``model`` in eval mode; returns a float32 CPU tensor."""
    model.to(device)
    was_training = model.training
    model.eval()
    images_only = ImageDataset(samples, transform, labelled=False)
    workers = decode_workers(samples, batch_size)
    # Batches in flight (workers x prefetch 2) bound the memory, whatever the image sizes.
    loader = DataLoader(images_only, batch_size=batch_size, shuffle=False, num_workers=workers)
    out = []
    with _forward_threads(workers):
        for images in progress(loader, desc=desc, total=len(loader)):
            images = images.to(device).contiguous(memory_format=torch.channels_last)
            out.append(model(images).float().cpu())
    model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def cache_keys(samples: Samples | Inputs) -> list[str]:
    """The cache key of each sample: its key plus its content's fingerprint (when the
    loader can give one), so an image overwritten under the same name is extracted
    again instead of being served the old embedding."""
    fingerprint = getattr(samples.loader, "fingerprint", None)
    keys = [str(k) for k in samples.keys]
    if fingerprint is None:
        return keys
    return [f"{k}\x00{fingerprint(k)}" for k in keys]


def cache_scope(samples: Samples | Inputs) -> str:
    """What identifies the images behind ``samples``' keys: the source name plus, for
    files, the folder they are read from (two folders may share a name, not content)."""
    root = getattr(samples.loader, "root", None)
    return samples.source if root is None else f"{samples.source}|{Path(root).resolve()}"


def _write_atomic(path: Path, tmp: Path, text: str) -> None:
    """Write ``text`` under a temporary name, then rename it into place."""
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_shard(keys_file: Path) -> dict[str, np.ndarray]:
    """One shard's rows by key; an unreadable shard is skipped (its rows are extracted
    again) with a warning, so one damaged file cannot break every later run."""
    matrix_file = keys_file.with_name(keys_file.name.removesuffix(".keys.json") + ".npy")
    try:
        names = json.loads(keys_file.read_text())
        matrix = np.load(matrix_file, allow_pickle=False)
        if not isinstance(names, list) or len(names) != len(matrix):
            raise ValueError(f"{len(names)} keys for {len(matrix)} rows")
    except (OSError, ValueError, EOFError) as exc:
        print(
            f"clbench: warning: skipping unreadable feature-cache shard {keys_file}: {exc}",
            file=sys.stderr,
        )
        return {}
    return dict(zip(names, matrix, strict=True))


@dataclass
class CacheStats:
    hits: int = 0
    extracted: int = 0
    extract_seconds: float = 0.0


@dataclass
class FeatureCache:
    """Frozen-network embeddings on disk; ``root=None`` keeps them in memory only."""

    root: Path | None
    stats: CacheStats = field(default_factory=CacheStats)
    _memory: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    _shards: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def folder(self, extractor_id: str, source: str) -> Path:
        digest = hashlib.sha256(
            f"{FORMAT}\n{extractor_id}\n{source}".encode(errors="surrogateescape")
        ).hexdigest()[:16]
        assert self.root is not None
        return self.root / digest

    def _load(
        self, extractor_id: str, source: str, from_disk: bool = True
    ) -> dict[str, np.ndarray]:
        key = (extractor_id, source)
        if key not in self._memory:
            self._memory[key] = {}
            self._shards[key] = set()
            if self.root is not None and from_disk:
                self._read_new_shards(extractor_id, source)
        return self._memory[key]

    def _read_new_shards(self, extractor_id: str, source: str) -> None:
        """Add the shards on disk not read yet (other processes may have written some)."""
        key = (extractor_id, source)
        table, seen = self._memory[key], self._shards[key]
        for keys_file in sorted(self.folder(extractor_id, source).glob("*.keys.json")):
            if keys_file.name not in seen:
                # A shard's .npy is renamed into place before its keys, so it is complete.
                table.update(_read_shard(keys_file))
                seen.add(keys_file.name)

    @contextlib.contextmanager
    def _locked(self, extractor_id: str, source: str) -> Iterator[None]:
        """An exclusive lock on the folder while extracting; none where it cannot be had
        (no fcntl, a read-only cache: the write then fails with its own warning)."""
        folder = self.folder(extractor_id, source)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / ".lock", "a")  # noqa: SIM115 (held across the yield)
        except OSError:
            yield
            return
        with handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def _store(self, extractor_id: str, source: str, keys: list[str], matrix: np.ndarray) -> None:
        if self.root is None or not keys:
            return
        folder = self.folder(extractor_id, source)
        folder.mkdir(parents=True, exist_ok=True)
        shard = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        _write_atomic(
            folder / "ID",
            folder / f".{shard}.ID.tmp",
            json.dumps({"extractor": extractor_id, "source": source}, ensure_ascii=True),
        )
        # The .npy goes in first; a shard counts only once its keys file exists. Keys are
        # a JSON list (ASCII-escaped): any file name, newlines and odd bytes included.
        tmp = folder / f".{shard}.npy.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, matrix)
        os.replace(tmp, folder / f"{shard}.npy")
        _write_atomic(
            folder / f"{shard}.keys.json",
            folder / f".{shard}.keys.tmp",
            json.dumps(keys, ensure_ascii=True),
        )
        self._shards[(extractor_id, source)].add(f"{shard}.keys.json")

    def _store_or_warn(self, extractor_id: str, scope: str, keys: list[str], matrix) -> None:
        try:
            self._store(extractor_id, scope, keys, matrix)
        except OSError as exc:  # a full or read-only cache must not end the run
            print(
                f"clbench: warning: could not write the feature cache in {self.root} "
                f"({exc.strerror or exc}); features kept in memory for this run",
                file=sys.stderr,
            )

    def get(
        self,
        model: torch.nn.Module | Deferred[torch.nn.Module],
        extractor_id: str,
        samples: Samples | Inputs,
        transform: Any,
        device: torch.device,
        batch_size: int = 64,
        persist: bool = True,
    ) -> torch.Tensor:
        """Embeddings of ``samples`` in order, extracting only what is not cached.

        ``persist=False`` keeps them in memory only: for networks that exist for one
        run (an adapted copy), whose features no later run can reuse. ``model`` and
        ``transform`` may be :class:`Deferred`: made only when a sample is missing.
        """
        scope = cache_scope(samples)
        table = self._load(extractor_id, scope, from_disk=persist)
        keys = cache_keys(samples)
        missing = sorted({k for k in keys if k not in table})
        on_disk = persist and self.root is not None
        with self._locked(extractor_id, scope) if missing and on_disk else contextlib.nullcontext():
            if missing and on_disk:
                # Another worker may have embedded them while this one waited for the lock.
                self._read_new_shards(extractor_id, scope)
                missing = [k for k in missing if k not in table]
            self.stats.hits += len(keys) - len(missing)
            if missing:
                began = time.perf_counter()
                position = {k: i for i, k in enumerate(keys)}
                todo = samples.subset([position[k] for k in missing])
                # A feature extracted or served from the cache must leave the run the same:
                # the DataLoader draws its base seed from torch's generator, which moved a
                # method's later draws (a cold `linear` run differed from a warm one).
                with rng_untouched():
                    matrix = embed_samples(
                        resolve(model),
                        todo,
                        resolve(transform),
                        device,
                        batch_size,
                        desc=f"features {samples.source}",
                    ).numpy()
                self.stats.extract_seconds += time.perf_counter() - began
                self.stats.extracted += len(missing)
                if persist:
                    self._store_or_warn(extractor_id, scope, missing, matrix)
                table.update(zip(missing, matrix, strict=True))
        if not keys:
            return torch.empty(0, 0)
        return torch.from_numpy(np.stack([table[k] for k in keys]))
