"""A backbone known without building it: what a fully cached run needs of one.

A run whose every feature is already in the feature cache uses its backbone
only for a description: the name, weights id and cache id the features are
keyed by, the preprocessing and feature size the result records. Building the
network for that costs more than the run (importing timm and torchvision,
reading and hashing the weights). So the run that builds a backbone stores its
description in a small JSON file beside the features, and a later run with the
same request gets a :class:`LazyBackbone` that builds the network only when
something needs it: a feature missing from the cache, or a method that adapts
or trains the network (``ctx.backbone``, ``ctx.new_backbone()``).

A stored description is trusted only when nothing it was derived from changed,
and is otherwise rebuilt and rewritten:

- the request: backbone spec, ``--weights`` (resolved path) and preprocessing
  options name the file (``DescriptorStore.path``);
- every weights file the factory read keeps its size, modification time and
  inode (the weights id is a hash of the file, taken when it was built);
- clbench's backbone code (``clbench/backbones/*.py`` and the factory's own
  module) hashes the same, and timm, open_clip and torch have the same versions;
- the factory registered under the name (when this process has registered
  one) is the one that built it.

Backbones whose weights are not local files (hub downloads, an unseeded random
initialisation) have no ``weights_files`` and are never described: every run
builds them, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clbench.backbones import Backbone, build_backbone, parse_backbone_spec
from clbench.backbones.preprocessing import Preprocessing
from clbench.errors import ClbenchError
from clbench.learner import rng_untouched
from clbench.manifest import versions
from clbench.registry import BACKBONES

#: Version of the stored record: a file of another format is never read.
FORMAT = "backbone-descriptor-v1"
#: Libraries whose version can change an architecture or a pretrained config.
LIBRARIES = ("torch", "timm", "open_clip_torch")
#: clbench's backbone code: any change to these files invalidates every description.
CODE_FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BackboneDescriptor:
    """Everything a run reads of a frozen backbone, without the network."""

    name: str
    weights_id: str
    cache_id: str
    feature_dim: int
    parameter_count: int
    preprocessing: Preprocessing

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    def transform(self, train: bool = False):
        """The backbone's transform (the same as ``Backbone.transform``)."""
        return self.preprocessing.transform(train)

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["preprocessing"] = {
            f.name: getattr(self.preprocessing, f.name) for f in dataclasses.fields(Preprocessing)
        }
        return fields

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneDescriptor:
        pre = dict(data["preprocessing"])
        pre["overrides"] = tuple(pre.get("overrides", ()))
        return cls(**{**data, "preprocessing": Preprocessing(**pre)})


def describe(backbone: Any) -> BackboneDescriptor | None:
    """The description of a built backbone, or None when it cannot be trusted later
    (not an image Backbone, or weights that are not local files)."""
    if not isinstance(backbone, Backbone) or backbone.weights_files is None:
        return None
    return BackboneDescriptor(
        name=backbone.name,
        weights_id=backbone.weights_id,
        cache_id=backbone.cache_id,
        feature_dim=int(backbone.feature_dim),
        parameter_count=backbone.parameter_count,
        preprocessing=backbone.preprocessing,
    )


@dataclass(frozen=True)
class Request:
    """What a run asks for: the spec, ``--weights`` and the preprocessing options."""

    spec: str
    weights: str | None
    overrides: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        weights = self.weights
        if weights is not None and Path(weights).expanduser().exists():
            # A relative path means another file from another folder.
            weights = str(Path(weights).expanduser().resolve())
        overrides = {k: v for k, v in sorted(self.overrides.items()) if v is not None}
        return {"spec": self.spec, "weights": weights, "overrides": overrides}

    def key(self) -> str:
        # Checkouts sharing one cache keep a file each instead of overwriting each other's.
        blob = json.dumps([FORMAT, str(CODE_FOLDER), self.identity()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode(errors="surrogateescape")).hexdigest()[:20]


def file_identity(path: Path) -> list[int] | None:
    """Size, modification time and inode of a file (None when it is gone): a rewrite,
    a copy over it or a replacement all change one of them."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def code_digest(factory_file: str | None) -> str:
    """A hash of clbench's backbone modules and the factory's own module."""
    files = sorted(CODE_FOLDER.glob("*.py"))
    if factory_file and Path(factory_file) not in files:
        files.append(Path(factory_file))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\x00missing")
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    return versions(LIBRARIES)


def factory_of(name: str) -> Callable[..., Any] | None:
    """The factory registered under a backbone name, or None when none is registered in
    this process yet (the registry's modules are not imported just to ask)."""
    entry = BACKBONES.registered(name)
    return None if entry is None else entry.factory


def factory_id(factory: Callable[..., Any]) -> str:
    return f"{factory.__module__}:{factory.__qualname__}"


class DescriptorStore:
    """Descriptions of built backbones, one JSON file per request, in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, request: Request) -> Path:
        return self.root / f"{request.key()}.json"

    def load(self, request: Request) -> BackboneDescriptor | None:
        """The stored description of ``request`` if every check of the module docstring
        passes, else None (the caller builds the network)."""
        try:
            record = json.loads(self.path(request).read_text())
        except (OSError, ValueError):
            return None
        try:
            if not self._current(record, request):
                return None
            return BackboneDescriptor.from_dict(record["backbone"])
        except (KeyError, TypeError, ValueError, ClbenchError):
            return None  # a damaged or foreign record: rebuilt and rewritten

    def _current(self, record: dict[str, Any], request: Request) -> bool:
        if record.get("format") != FORMAT or record.get("request") != request.identity():
            return False
        name, _ = parse_backbone_spec(request.spec)
        factory = factory_of(name)
        if factory is not None and factory_id(factory) != record["factory"]:
            return False  # another factory now answers to this name
        if record["libraries"] != library_versions():
            return False
        if record["code"] != code_digest(record["factory_file"]):
            return False
        weights = record["weights_files"]
        return all(file_identity(Path(p)) == identity for p, identity in weights.items())

    def save(self, request: Request, backbone: Backbone) -> None:
        """Store the description of ``backbone``, just built for ``request`` (when it can
        be described); a cache that cannot be written only costs the next run a build."""
        descriptor = describe(backbone)
        if descriptor is None:
            return
        name, _ = parse_backbone_spec(request.spec)
        factory = factory_of(name)
        if factory is None:
            return
        factory_file = inspect.getsourcefile(factory)
        weights = {}
        for path in backbone.weights_files:
            resolved = Path(path).resolve()
            identity = file_identity(resolved)
            if identity is None:
                return
            weights[str(resolved)] = identity
        record = {
            "format": FORMAT,
            "request": request.identity(),
            "factory": factory_id(factory),
            "factory_file": factory_file,
            "libraries": library_versions(),
            "code": code_digest(factory_file),
            "weights_files": weights,
            "backbone": descriptor.to_dict(),
        }
        target = self.path(request)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            os.replace(tmp, target)
        except OSError as exc:
            print(
                f"clbench: warning: could not store the backbone description in {self.root} "
                f"({exc.strerror or exc}); the next run builds the backbone again",
                file=sys.stderr,
            )

    def discard(self, request: Request) -> None:
        self.path(request).unlink(missing_ok=True)


class LazyBackbone:
    """A described backbone whose network is built on first need (``network()``)."""

    def __init__(self, descriptor: BackboneDescriptor, build: Callable[[], Backbone]) -> None:
        self.descriptor = descriptor
        self._build = build
        self._network: Backbone | None = None

    @property
    def built(self) -> bool:
        return self._network is not None

    def network(self) -> Backbone:
        if self._network is None:
            # Built mid-run, after the run seeded its generators: building (timm draws a
            # random init before loading the weights) must not move them, or a method's
            # own random draws would differ from a run that built the network up front.
            with rng_untouched():
                network = self._build()
            found = describe(network)
            if found != self.descriptor:
                # The run may already have read features under the stored cache id.
                raise ClbenchError(
                    f"the backbone {self.descriptor.name} built now differs from the "
                    f"description a previous run stored ({_difference(self.descriptor, found)})",
                    "run again: the stale description was removed",
                )
            self._network = network
        return self._network


def _difference(stored: BackboneDescriptor, found: BackboneDescriptor | None) -> str:
    if found is None:
        return "it can no longer be described"
    changed = [
        f"{f.name} {getattr(stored, f.name)!r} -> {getattr(found, f.name)!r}"
        for f in dataclasses.fields(BackboneDescriptor)
        if getattr(stored, f.name) != getattr(found, f.name)
    ]
    return "; ".join(changed)


def open_backbone(
    spec: str,
    weights: str | None,
    overrides: dict[str, Any],
    store: DescriptorStore | None,
    device: torch.device,
) -> Backbone | LazyBackbone:
    """The run's backbone: lazy when ``store`` holds a current description of this
    request, else built now (and described for the next run)."""
    request = Request(spec, weights, dict(overrides))

    def build() -> Backbone:
        return build_backbone(spec, weights, **overrides).to(device)

    descriptor = store.load(request) if store is not None else None
    if descriptor is None:
        backbone = build()
        if store is not None:
            store.save(request, backbone)
        return backbone

    def build_checked() -> Backbone:
        backbone = build()
        if describe(backbone) != descriptor:
            store.discard(request)  # LazyBackbone refuses it; the next run rebuilds
        return backbone

    return LazyBackbone(descriptor, build_checked)
