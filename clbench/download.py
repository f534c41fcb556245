"""Downloading datasets from their public sources: resume, verify, extract.

A file is downloaded into ``<name>.part`` next to its final name. An interrupted
transfer (a dropped connection, a killed process) leaves the ``.part`` file, and
the next attempt asks the server for the rest with an HTTP ``Range`` header; a
server that ignores ranges answers 200 and the file starts over. Only a file
whose checksum matches is renamed to its final name, so a present file is
always a verified one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from clbench.errors import ClbenchError, DataMissingError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset's public distribution.

    ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` (the algorithm the
    publisher or a reference loader states); None only where no published
    checksum exists, and then the download is accepted on its length alone.
    """

    url: str
    filename: str
    checksum: str | None = None
    extract: bool = True
    """Unpack after download (tar, tar.gz, tgz, zip); plain files are kept as they are."""
    into: str = ""
    """Sub-folder of the destination that receives the unpacked (or plain) file."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, checksum: str | None) -> None:
    """Raise if ``path`` does not match ``checksum`` (``algo:hex``)."""
    if checksum is None:
        return
    algorithm, _, expected = checksum.partition(":")
    got = file_digest(path, algorithm)
    if got.lower() != expected.lower():
        raise ClbenchError(
            f"{path.name} has {algorithm} {got}, expected {expected}",
            "the server sent a different or damaged file; run the fetch again "
            "(the bad file was removed)",
        )


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current length)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "clbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is complete
            return
        raise
    with response:
        resumed = response.status == 206
        expected = response.headers.get("Content-Length")
        expected = int(expected) if expected is not None else None
        written = 0
        with open(part, "ab" if resumed else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                written += len(block)
        if expected is not None and written < expected:
            raise ConnectionError(f"connection closed after {written} of {expected} bytes")


#: Seconds a connection may stay silent, and retries after a failure (``clbench fetch
#: --timeout/--retries``): a stalled server fails after about (retries + 1) x timeout.
TIMEOUT = 30.0
RETRIES = 3


def download(
    remote: RemoteFile,
    folder: Path,
    retries: int = RETRIES,
    timeout: float = TIMEOUT,
    quiet: bool = False,
) -> Path:
    """Download ``remote`` into ``folder`` (resuming a ``.part`` file), verify, return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.filename
    if final.exists():
        return final
    part = final.with_name(final.name + ".part")
    if not quiet:
        print(f"clbench: downloading {remote.url}", file=sys.stderr)
    for attempt in range(retries + 1):
        try:
            _transfer(remote.url, part, timeout)
            break
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, cut transfers
            if not quiet:
                print(
                    f"clbench: attempt {attempt + 1} of {retries + 1} failed: {exc}"
                    + (f"; retrying (timeout {timeout:g}s)" if attempt < retries else ""),
                    file=sys.stderr,
                )
            if attempt == retries:
                raise DataMissingError(
                    f"could not download {remote.url}: {exc} "
                    f"({part.stat().st_size if part.exists() else 0} bytes kept in {part})",
                    "check the network and run the same command again: it resumes where it stopped",
                ) from exc
            time.sleep(min(2**attempt, 10) * 0.1)
    try:
        verify(part, remote.checksum)
    except ClbenchError:
        part.unlink()
        raise
    part.replace(final)
    return final


def is_archive(path: Path) -> bool:
    return tarfile.is_tarfile(path) or zipfile.is_zipfile(path)


def extract(archive: Path, destination: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``destination``, safely.

    Members are unpacked into a temporary folder inside ``destination`` and moved into
    place only when every member was accepted, so a refused member (a path outside
    the folder, a link to an absolute path, a device) or a damaged archive leaves
    nothing behind but one message.
    """
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination))
    try:
        try:
            _unpack(archive, staging)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ClbenchError(
                f"{archive.name} cannot be unpacked safely: {type(exc).__name__}: {exc}",
                "nothing was unpacked; delete the archive and fetch again, or report the source",
            ) from exc
        for entry in staging.iterdir():
            _move_into(entry, destination / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, folder: Path) -> None:
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            root = folder.resolve()
            for member in zipped.namelist():
                if not (folder / member).resolve().is_relative_to(root):
                    raise ClbenchError(f"{archive.name} holds a path outside its folder: {member}")
            zipped.extractall(folder)
    else:
        raise ClbenchError(f"{archive} is neither a tar nor a zip archive")


def _move_into(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, merging folders that exist already."""
    if target.is_dir() and source.is_dir() and not source.is_symlink():
        for entry in source.iterdir():
            _move_into(entry, target / entry.name)
        return
    os.replace(source, target)


def fetch_files(
    files: tuple[RemoteFile, ...],
    destination: Path,
    quiet: bool = False,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
) -> None:
    """Download every file into ``destination/.downloads``, then unpack archives into ``destination``.

    Each file lands in ``destination / remote.into``. Verified archives are deleted
    once unpacked; plain files are moved into place.
    """
    staging = destination / ".downloads"
    for remote in files:
        path = download(remote, staging, retries=retries, timeout=timeout, quiet=quiet)
        if remote.extract and is_archive(path):
            extract(path, destination / remote.into)
            path.unlink()
        else:
            target = destination / remote.into / remote.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    if staging.exists() and not any(staging.iterdir()):
        staging.rmdir()
