"""Reading a weights file and loading it strictly: the one path every backbone uses.

A weights file that does not fit the network must stop the run: a non-strict
load leaves the unmatched layers at their random initialisation, and the run
would then measure a random network under the name of a pretrained one.
Files are read without unpickling arbitrary objects (safetensors, or
``torch.load(weights_only=True)``), so a weights file cannot run code either.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from clbench.errors import ClbenchError

#: Keys listed in full in an error message; the rest are counted.
SHOWN_KEYS = 8
#: Wrappers that training scripts put around a state dict.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def list_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" ... (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or torch weights file, unwrapped from the
    usual ``{"state_dict": ...}`` / ``module.`` wrappers; any other content is an error."""
    path = Path(path)
    if not path.is_file():
        raise ClbenchError(
            f"weights file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""),
            "pass an existing .pth or .safetensors file to --weights",
        )
    if path.stat().st_size == 0:
        raise ClbenchError(f"weights file {path} is empty", "download it again")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse untrusted bytes is a bad file
        raise bad_file_error(path, exc, "weights file") from exc
    return _unwrap(state, path)


def bad_file_error(path: Path, exc: BaseException, what: str) -> ClbenchError:
    """The one message for a torch file that cannot be read safely."""
    text = str(exc).strip()
    if isinstance(exc, pickle.UnpicklingError) and re.search(r"GLOBAL [\w.]+", text):
        # weights_only refused a global: the file holds objects, not only tensors.
        found = re.search(r"GLOBAL ([\w.]+)", text)
        return ClbenchError(
            f"{what} {path} holds objects other than tensors and plain data"
            + (f" ({found[1]})" if found else "")
            + "; clbench does not unpickle them, since unpickling can run code",
            "save only tensors and plain data (torch.save(model.state_dict(), ...))",
        )
    first = text.splitlines()[0][:200] if text else ""
    return ClbenchError(
        f"{what} {path} is not a readable torch or safetensors file "
        f"({type(exc).__name__}: {first})",
        "it may be truncated or of another format; download or create it again",
    )


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(state, Mapping) and len(state) >= 1:
            inner = next((state[k] for k in WRAPPER_KEYS if k in state), None)
            if isinstance(inner, Mapping) and not any(
                isinstance(v, torch.Tensor) for v in state.values()
            ):
                state = inner
                continue
        break
    if not isinstance(state, Mapping) or not state:
        raise ClbenchError(
            f"weights file {path} holds {type(state).__name__}, not a state dict of tensors",
            "save the weights with torch.save(model.state_dict(), PATH)",
        )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ClbenchError(f"weights file {path} holds no tensors", "pass a model's state dict")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def check_fit(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """Refuse ``state`` unless it has exactly the model's keys with the model's shapes.

    ``ignore_unexpected`` names key prefixes that may be left over (a classifier
    the backbone drops); nothing the model needs may be missing.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [
        k for k in state if k not in expected and not k.startswith(tuple(ignore_unexpected))
    ]
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or misshapen):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {list_keys(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {list_keys(unexpected)}")
    if misshapen:
        parts.append(f"{len(misshapen)} of another shape: {list_keys(misshapen)}")
    raise ClbenchError(
        f"the weights in {source} do not fit {type(model).__name__} "
        f"({len(expected)} tensors expected); keys " + "; ".join(parts),
        "pass the weights of exactly this architecture (a non-strict load would leave "
        "random layers)",
    )


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """Check that ``state`` fits ``model`` (see :func:`check_fit`), then load it."""
    check_fit(model, state, source, ignore_unexpected)
    kept = {k: v for k, v in state.items() if k in model.state_dict()}
    model.load_state_dict(kept, strict=True)
