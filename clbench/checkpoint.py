"""Per-task checkpoints that load without running code from the file.

``torch.load(weights_only=False)`` unpickles anything, so a checkpoint someone
hands you (or one planted in the cache) could run code on ``--resume``. Here a
checkpoint is read with ``weights_only=True``: tensors and plain data only,
plus the classes this module admits through torch's safe-globals mechanism.

What is admitted, and why that is safe: the unpickler may create an admitted
class (``cls.__new__``, then set its ``__dict__``) or call it with arguments
from the file. That is harmless for

* network modules (``torch.nn.Module`` subclasses) defined by torch, timm,
  open_clip, peft or clbench: their constructors and ``__setstate__`` only
  build layers; learners keep adapted networks as such objects (with the
  enumerations their layers hold, such as timm's tensor ``Format``);
* dataclasses defined in clbench (class statistics, samples), plain records;
* plain-data classes of learners marked with :func:`checkpoint_state` (their
  constructors only store values; the mark is the reviewer's promise of that);
* a fixed list of value types: ``OrderedDict``, ``pathlib`` paths,
  ``torch.Generator`` and ``functools.partial`` (whose function must itself be
  admitted);
* clbench's own rebuilders for numpy values, which numpy pickles through
  functions that are not admitted (``_reconstruct``): saving rewrites every
  numpy array, scalar and dtype as bytes plus a dtype string.

Any other global (``os.system``, ``builtins.eval``, a class from elsewhere) is
refused before anything is built, with its name in the message.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import importlib
import io
import os
import pathlib
import pickle
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from clbench.backbones._weights import bad_file_error
from clbench.errors import ClbenchError

#: Packages whose network modules may be rebuilt from a checkpoint.
MODULE_PACKAGES = ("torch", "timm", "open_clip", "peft", "clbench")


def _ndarray(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()


def _object_array(items: list, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def _numpy_scalar(data: bytes, dtype: str) -> np.generic:
    return np.frombuffer(data, dtype=np.dtype(dtype))[0]


def _numpy_dtype(dtype: str) -> np.dtype:
    return np.dtype(dtype)


REBUILDERS = (_ndarray, _object_array, _numpy_scalar, _numpy_dtype)
VALUE_TYPES = (
    collections.OrderedDict,
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.WindowsPath,
    pathlib.PureWindowsPath,
    torch.Generator,
    functools.partial,
)


#: Classes marked with :func:`checkpoint_state`.
MARKED: set[type] = set()

T = TypeVar("T", bound=type)


def checkpoint_state(cls: T) -> T:
    """Admit ``cls`` into checkpoints: for plain-data classes a learner keeps in its state
    (neither a network module nor a dataclass) whose constructor has no side effects."""
    MARKED.add(cls)
    return cls


class _Pickler(pickle.Pickler):
    """Writes numpy values through the rebuilders above instead of numpy's own."""

    def reducer_override(self, obj: Any):
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                return _object_array, (obj.reshape(-1).tolist(), obj.shape)
            return _ndarray, (np.ascontiguousarray(obj).tobytes(), obj.dtype.str, obj.shape)
        if isinstance(obj, np.generic):
            return _numpy_scalar, (obj.tobytes(), obj.dtype.str)
        if isinstance(obj, np.dtype):
            return _numpy_dtype, (obj.str,)
        return NotImplemented


class _PickleModule:
    """What ``torch.save(pickle_module=...)`` needs: a Pickler class."""

    Pickler = _Pickler
    HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL

    @staticmethod
    def dump(obj: Any, file, protocol: int | None = None) -> None:
        _Pickler(file, protocol).dump(obj)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    buffer = io.BytesIO()
    torch.save(state, buffer, pickle_module=_PickleModule)
    with open(tmp, "wb") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _resolve(name: str) -> Any | None:
    """The object a pickle global ``module.qualname`` names, if its package is trusted."""
    parts = name.split(".")
    if parts[0] not in (*MODULE_PACKAGES, "collections", "pathlib", "functools"):
        return None
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def admitted(name: str) -> Any | None:
    """The global ``name`` if the policy in the module docstring admits it, else None."""
    obj = _resolve(name)
    if obj is None:
        return None
    root = getattr(obj, "__module__", "").split(".")[0]
    if any(obj is known for known in (*REBUILDERS, *VALUE_TYPES)):
        return obj
    if not isinstance(obj, type):
        return None
    if obj in MARKED:
        return obj
    if issubclass(obj, torch.nn.Module | enum.Enum) and root in MODULE_PACKAGES:
        return obj
    if dataclasses.is_dataclass(obj) and root == "clbench":
        return obj
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything unsafe.

    A truncated, empty or foreign file, or one naming a global the policy does
    not admit, is one :class:`ClbenchError` naming the file.
    """
    path = Path(path)
    hint = "delete it (or run without --resume) to start the run over"
    if not path.is_file() or path.stat().st_size == 0:
        raise ClbenchError(f"checkpoint {path} is empty or not a file", hint)
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a torch zip file at all
        raise _checkpoint_error(path, exc, hint) from exc
    refused = [name for name in needed if admitted(name) is None]
    if refused:
        raise ClbenchError(
            f"checkpoint {path} names {', '.join(sorted(refused)[:5])}, which clbench does not "
            "unpickle (only tensors, plain data, network modules and classes marked with "
            "clbench.checkpoint.checkpoint_state are admitted; unpickling others could run code)",
            hint,
        )
    try:
        with torch.serialization.safe_globals([admitted(name) for name in needed]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _checkpoint_error(path, exc, hint) from exc
    if not isinstance(state, dict) or not {"step", "split_hash", "learner"} <= set(state):
        raise ClbenchError(f"checkpoint {path} is not a clbench checkpoint", hint)
    return state


def _checkpoint_error(path: Path, exc: BaseException, hint: str) -> ClbenchError:
    error = bad_file_error(path, exc, "checkpoint")
    return ClbenchError(error.message, hint)
