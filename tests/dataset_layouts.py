"""Tiny datasets in the exact on-disk layouts of the real benchmarks, made at test time,
and a local HTTP server (Range-capable, able to cut a transfer short) to download them from."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import pickle
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, seed: int, size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_cifar100(root: Path, train_per_class: int = 1, test_per_class: int = 1) -> Path:
    """``cifar-100-python/{train,test,meta}`` pickles as the CIFAR release writes them."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.tile(np.arange(100), per)
        data = rng.integers(0, 255, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / part, "wb") as handle:
            pickle.dump(
                {
                    "data": data,
                    "fine_labels": labels.tolist(),
                    "coarse_labels": (labels // 5).tolist(),
                    "filenames": [f"{i}.png" for i in range(len(labels))],
                },
                handle,
            )
    with open(folder / "meta", "wb") as handle:
        pickle.dump(
            {
                "fine_label_names": [f"fine{c:02d}" for c in range(100)],
                "coarse_label_names": [f"coarse{c:02d}" for c in range(20)],
            },
            handle,
        )
    return folder


def write_cub(root: Path, classes: list[str], images: dict[str, list[tuple[str, bool]]]) -> Path:
    """``CUB_200_2011`` with images.txt, image_class_labels.txt, train_test_split.txt, classes.txt.

    ``classes`` are folder names (``001.Black_footed_Albatross``) in id order;
    ``images[class]`` lists (file name, is_train).
    """
    folder = root / "CUB_200_2011"
    lines = {"images": [], "labels": [], "split": []}
    image_id = 0
    for class_id, name in enumerate(classes, start=1):
        for file, is_train in images[name]:
            image_id += 1
            write_png(folder / "images" / name / file, image_id)
            lines["images"].append(f"{image_id} {name}/{file}")
            lines["labels"].append(f"{image_id} {class_id}")
            lines["split"].append(f"{image_id} {int(is_train)}")
    (folder / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (folder / "classes.txt").write_text(
        "".join(f"{i} {n}\n" for i, n in enumerate(classes, start=1))
    )
    return folder


def cub_classes(n: int = 200) -> list[str]:
    return [f"{i:03d}.Bird_{i}" for i in range(1, n + 1)]


def write_class_tree(base: Path, classes: list[str], per_class: int, seed: int = 0) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(base / name / f"img{i}.png", seed + 1000 * c + i)


def write_domainnet(root: Path, domains: list[str], classes: list[str], per_class: int = 2) -> None:
    """``domainnet/<domain>/<class>/<file>`` and the ``<domain>_{train,test}.txt`` lists."""
    for d, domain in enumerate(domains):
        for part in ("train", "test"):
            lines = []
            for label, name in enumerate(classes):
                for i in range(per_class):
                    rel = f"{domain}/{name}/{domain}_{label:03d}_{part}{i}.png"
                    write_png(
                        root / "domainnet" / rel,
                        d * 100_000 + label * 100 + i * 2 + (part == "test"),
                    )
                    lines.append(f"{rel} {label}")
            (root / "domainnet" / f"{domain}_{part}.txt").write_text("\n".join(lines) + "\n")


def write_core50(
    root: Path, sessions: range = range(1, 12), objects: int = 50, per: int = 1
) -> None:
    """``core50/core50_128x128/s<k>/o<j>/C_<kk>_<jj>_<nnn>.png``."""
    for s in sessions:
        for o in range(1, objects + 1):
            for i in range(per):
                write_png(
                    root
                    / "core50"
                    / "core50_128x128"
                    / f"s{s}"
                    / f"o{o}"
                    / f"C_{s:02d}_{o:02d}_{i:03d}.png",
                    s * 1000 + o * 10 + i,
                )


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped idx file (unsigned bytes) as the MNIST family ships it."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_tar(source: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def digest(path: Path, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, path.read_bytes()).hexdigest()}"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``server.folder``; honours Range unless told not to, and can
    cut the first transfer of each file short (announcing the full length)."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        path = server.folder / self.path.lstrip("/")
        server.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not server.ignore_range:
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.path in server.cut and self.path not in server.already_cut:
            server.already_cut.add(self.path)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@contextmanager
def http_server(folder: Path, cut: set[str] | None = None, ignore_range: bool = False):
    """A server on 127.0.0.1 serving ``folder``; yields (base_url, server)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.folder, server.cut, server.already_cut = folder, cut or set(), set()
    server.ignore_range, server.requests = ignore_range, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
