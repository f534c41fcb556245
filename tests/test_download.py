"""The shared downloader against a local HTTP server: resume, checksum, extraction."""

from __future__ import annotations

import tarfile
import zipfile

import pytest

from clbench.download import RemoteFile, download, extract, fetch_files
from clbench.errors import ClbenchError
from tests.dataset_layouts import digest, http_server


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    blob = bytes(range(256)) * 4096  # 1 MiB, distinct bytes at every offset mod 256
    (folder / "blob.bin").write_bytes(blob)
    return folder, blob


def test_download_verifies_and_names_the_file(served, tmp_path):
    folder, blob = served
    with http_server(folder) as (url, _):
        path = download(
            RemoteFile(f"{url}/blob.bin", "blob.bin", digest(folder / "blob.bin")),
            tmp_path / "dl",
            quiet=True,
        )
    assert path.read_bytes() == blob
    assert not (tmp_path / "dl" / "blob.bin.part").exists()


def test_truncated_transfer_resumes_with_range(served, tmp_path):
    folder, blob = served
    with http_server(folder, cut={"/blob.bin"}) as (url, server):
        path = download(
            RemoteFile(f"{url}/blob.bin", "blob.bin", digest(folder / "blob.bin", "md5")),
            tmp_path / "dl",
            quiet=True,
        )
    assert path.read_bytes() == blob
    assert len(server.requests) == 2
    assert server.requests[0][1] is None
    resumed_from = int(server.requests[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from < len(blob)


def test_leftover_part_file_is_resumed_not_restarted(served, tmp_path):
    folder, blob = served
    target = tmp_path / "dl"
    target.mkdir()
    (target / "blob.bin.part").write_bytes(blob[:1000])  # an earlier, interrupted run
    with http_server(folder) as (url, server):
        download(
            RemoteFile(f"{url}/blob.bin", "blob.bin", digest(folder / "blob.bin")),
            target,
            quiet=True,
        )
    assert server.requests == [("/blob.bin", "bytes=1000-")]
    assert (target / "blob.bin").read_bytes() == blob


def test_server_without_range_support_restarts_cleanly(served, tmp_path):
    folder, blob = served
    target = tmp_path / "dl"
    target.mkdir()
    (target / "blob.bin.part").write_bytes(b"stale bytes that must not survive")
    with http_server(folder, ignore_range=True) as (url, _):
        download(
            RemoteFile(f"{url}/blob.bin", "blob.bin", digest(folder / "blob.bin")),
            target,
            quiet=True,
        )
    assert (target / "blob.bin").read_bytes() == blob


def test_checksum_mismatch_raises_and_removes_the_file(served, tmp_path):
    folder, _ = served
    with http_server(folder) as (url, _), pytest.raises(ClbenchError, match="expected 0000"):
        download(
            RemoteFile(f"{url}/blob.bin", "blob.bin", "sha256:" + "0" * 64),
            tmp_path / "dl",
            quiet=True,
        )
    assert list((tmp_path / "dl").iterdir()) == []


def test_missing_url_gives_a_data_missing_message(tmp_path):
    with http_server(tmp_path) as (url, _), pytest.raises(ClbenchError, match="could not download"):
        download(RemoteFile(f"{url}/nope.tar", "nope.tar"), tmp_path / "dl", retries=0, quiet=True)


def test_fetch_files_unpacks_archives_and_places_plain_files(tmp_path):
    www = tmp_path / "www"
    (www / "src" / "a").mkdir(parents=True)
    (www / "src" / "a" / "x.txt").write_text("x")
    with tarfile.open(www / "pack.tar.gz", "w:gz") as tar:
        tar.add(www / "src" / "a", arcname="a")
    (www / "list.txt").write_text("plain")
    dest = tmp_path / "root"
    with http_server(www) as (url, _):
        fetch_files(
            (
                RemoteFile(
                    f"{url}/pack.tar.gz", "pack.tar.gz", digest(www / "pack.tar.gz"), into="ds"
                ),
                RemoteFile(
                    f"{url}/list.txt",
                    "list.txt",
                    digest(www / "list.txt"),
                    extract=False,
                    into="ds",
                ),
            ),
            dest,
            quiet=True,
        )
    assert (dest / "ds" / "a" / "x.txt").read_text() == "x"
    assert (dest / "ds" / "list.txt").read_text() == "plain"
    assert not (dest / ".downloads").exists()


def test_zip_with_escaping_path_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../outside.txt", "no")
    with pytest.raises(ClbenchError, match="outside"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def _tar(path, members):
    """A tar whose members are (TarInfo, bytes or None) in order."""
    import io

    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"ok") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(
    "bad",
    [
        _file("../escape.txt"),
        _link("ds/link", "/etc/passwd"),
        _link("ds/up", "../../outside"),
        _link("ds/hard", "/etc/hostname", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "abs-symlink", "escaping-symlink", "abs-hardlink"],
)
def test_refused_tar_member_leaves_nothing_behind(tmp_path, bad):
    """Good members come first: a half-extracting unpacker would leave them behind."""
    archive = _tar(tmp_path / "evil.tar", [_file("ds/a/first.txt"), _file("ds/b.txt"), bad])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("pre-existing")
    with pytest.raises(ClbenchError, match="cannot be unpacked safely"):
        extract(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert (dest / "keep.txt").read_text() == "pre-existing"
    assert not (tmp_path / "escape.txt").exists()


def test_absolute_member_lands_inside_the_destination(tmp_path):
    """tar's data filter strips a leading slash instead of refusing the member."""
    extract(_tar(tmp_path / "a.tar", [_file("/abs/x.txt")]), tmp_path / "out")
    assert (tmp_path / "out" / "abs" / "x.txt").read_text() == "ok"


def test_truncated_archive_is_one_message(tmp_path):
    archive = _tar(tmp_path / "a.tar", [_file("ds/x.txt", b"x" * 5000)])
    archive.write_bytes(archive.read_bytes()[:1200])
    with pytest.raises(ClbenchError):
        extract(archive, tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_stalled_server_fails_after_the_timeout_and_says_so(tmp_path, capsys):
    """A server that accepts and never answers: (retries + 1) x timeout, not minutes."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    began = time.perf_counter()
    try:
        with pytest.raises(ClbenchError, match="could not download"):
            download(
                RemoteFile(f"http://127.0.0.1:{port}/x", "x"), tmp_path, retries=1, timeout=0.5
            )
    finally:
        listener.close()
    assert time.perf_counter() - began < 5
    err = capsys.readouterr().err
    assert "attempt 1 of 2 failed" in err and "attempt 2 of 2 failed" in err
