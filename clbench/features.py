"""The on-disk feature cache behind the frozen-feature fast path.

Embeddings of a frozen network are stored per (backbone cache id, sample
source), one folder each, as append-only shards: a shard is an ``.npy`` matrix
plus the keys of its rows, written atomically. A request loads the shards,
extracts only the keys no shard holds yet, and writes those as a new shard, so
each image is embedded once per (backbone, weights, transform, dataset split)
however many tasks, methods or runs ask for it.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clbench.data import Inputs, Samples
from clbench.progress import progress


class ImageDataset(Dataset):
    """Images as a torch Dataset: (image tensor, label) for training, the tensor alone
    for ``labelled=False`` (embedding test inputs, which carry no labels)."""

    def __init__(self, samples: Samples | Inputs, transform, labelled: bool = True) -> None:
        self.samples = samples
        self.transform = transform
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image = self.transform(self.samples.loader(self.samples.keys[index]))
        return (image, int(self.samples.labels[index])) if self.labelled else image


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
    loader = DataLoader(images_only, batch_size=batch_size, shuffle=False)
    out = []
    for images in progress(loader, desc=desc, total=len(loader)):
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        out.append(model(images).float().cpu())
    model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def cache_scope(samples: Samples | Inputs) -> str:
    """What identifies the images behind ``samples``' keys: the source name plus, for
    files, the folder they are read from (two folders may share a name, not content)."""
    root = getattr(samples.loader, "root", None)
    return samples.source if root is None else f"{samples.source}|{Path(root).resolve()}"


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

    def folder(self, extractor_id: str, source: str) -> Path:
        digest = hashlib.sha256(f"{extractor_id}\n{source}".encode()).hexdigest()[:16]
        assert self.root is not None
        return self.root / digest

    def _load(
        self, extractor_id: str, source: str, from_disk: bool = True
    ) -> dict[str, np.ndarray]:
        key = (extractor_id, source)
        if key in self._memory:
            return self._memory[key]
        table: dict[str, np.ndarray] = {}
        if self.root is not None and from_disk:
            folder = self.folder(extractor_id, source)
            for keys_file in sorted(folder.glob("*.keys")):
                matrix = np.load(keys_file.with_suffix(".npy"))
                names = keys_file.read_text().split("\n")
                table.update(zip(names, matrix, strict=True))
        self._memory[key] = table
        return table

    def _store(self, extractor_id: str, source: str, keys: list[str], matrix: np.ndarray) -> None:
        if self.root is None or not keys:
            return
        folder = self.folder(extractor_id, source)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ID").write_text(f"{extractor_id}\n{source}\n")
        shard = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        # The .npy goes in first; a shard counts only once its .keys file exists.
        tmp = folder / f".{shard}.npy.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, matrix)
        os.replace(tmp, folder / f"{shard}.npy")
        tmp = folder / f".{shard}.keys.tmp"
        tmp.write_text("\n".join(keys))
        os.replace(tmp, folder / f"{shard}.keys")

    def get(
        self,
        model: torch.nn.Module,
        extractor_id: str,
        samples: Samples | Inputs,
        transform,
        device: torch.device,
        batch_size: int = 64,
        persist: bool = True,
    ) -> torch.Tensor:
        """Embeddings of ``samples`` in order, extracting only what is not cached.

        ``persist=False`` keeps them in memory only: for networks that exist for one
        run (an adapted copy), whose features no later run can reuse.
        """
        scope = cache_scope(samples)
        table = self._load(extractor_id, scope, from_disk=persist)
        keys = [str(k) for k in samples.keys]
        missing = sorted({k for k in keys if k not in table})
        self.stats.hits += len(keys) - len(missing)
        if missing:
            start = time.perf_counter()
            position = {k: i for i, k in enumerate(samples.keys)}
            todo = samples.subset([position[k] for k in missing])
            matrix = embed_samples(
                model, todo, transform, device, batch_size, desc=f"features {samples.source}"
            ).numpy()
            self.stats.extract_seconds += time.perf_counter() - start
            self.stats.extracted += len(missing)
            if persist:
                self._store(extractor_id, scope, missing, matrix)
            table.update(zip(missing, matrix, strict=True))
        if not keys:
            return torch.empty(0, 0)
        return torch.from_numpy(np.stack([table[k] for k in keys]))
