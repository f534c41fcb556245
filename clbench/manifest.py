"""What produced a result: package versions, git commit, machine."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = (
    "clbench",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "avalanche-lib",
    "triton",
)


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the clbench checkout (with ``+dirty`` for uncommitted changes)."""
    path = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def manifest(device: torch.device) -> dict:
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
    }
