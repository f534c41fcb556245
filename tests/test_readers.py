"""Each standard-benchmark reader on a tiny fixture in the dataset's real layout, and
each downloader end to end (``clbench fetch``) against a local HTTP server."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clbench.cli import main
from clbench.download import RemoteFile
from clbench.errors import ClbenchError, DataMissingError
from clbench.scenarios.readers import miniimagenet as mini_module
from clbench.scenarios.readers.base import DATASETS, list_digest
from clbench.scenarios.readers.cifar import read_cifar100
from clbench.scenarios.readers.core50 import read_core50
from clbench.scenarios.readers.cub import read_cub200
from clbench.scenarios.readers.domainnet import DOMAINS, read_domainnet
from clbench.scenarios.readers.fashion_mnist import DEBIAN_FOLDER, read_fashion_mnist, read_idx
from clbench.scenarios.readers.imagefolders import (
    read_imagenet_a,
    read_imagenet_r,
    read_objectnet,
    read_vtab,
)
from clbench.scenarios.readers.miniimagenet import read_miniimagenet
from tests.dataset_layouts import (
    cub_classes,
    digest,
    http_server,
    make_tar,
    write_cifar100,
    write_class_tree,
    write_core50,
    write_cub,
    write_domainnet,
    write_idx,
)


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("CLBENCH_DATA", str(root))
    return root


def serve_and_fetch(
    monkeypatch,
    name: str,
    www: Path,
    files: list[RemoteFile],
    root: Path,
    cut: set[str] | None = None,
) -> None:
    """Point dataset ``name`` at a local server over ``www`` and run ``clbench fetch`` for it;
    the transfers of the files in ``cut`` are first broken off half-way."""
    with http_server(www, cut=cut) as (url, _):
        local = tuple(
            dataclasses.replace(f, url=f"{url}/{f.filename}", checksum=digest(www / f.filename))
            for f in files
        )
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], files=local))
        assert main(["fetch", name, "--data-root", str(root)]) == 0


def zip_folder(folder: Path, archive: Path, arc_root: str) -> None:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, f"{arc_root}/{path.relative_to(folder)}")


# -- CIFAR-100 ------------------------------------------------------------------------------
def test_cifar100_fetched_and_read(tmp_path, data_root, monkeypatch):
    write_cifar100(tmp_path / "src", train_per_class=2, test_per_class=1)
    www = tmp_path / "www"
    www.mkdir()
    make_tar(
        tmp_path / "src" / "cifar-100-python", www / "cifar-100-python.tar.gz", "cifar-100-python"
    )
    serve_and_fetch(monkeypatch, "cifar100", www, list(DATASETS["cifar100"].files), data_root)
    data = read_cifar100()
    assert data.num_classes == 100 and data.class_names[3] == "fine03"
    assert (len(data.train), len(data.test)) == (200, 100)
    assert data.train.labels[:3].tolist() == [0, 1, 2]
    # Pixel layout: the row's first 1024 bytes are the red plane.
    with open(data_root / "cifar-100-python" / "train", "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")["data"][5]
    image = np.asarray(data.train.loader("train/5"))
    assert image.shape == (32, 32, 3)
    assert (image[..., 0].ravel() == raw[:1024]).all() and (
        image[..., 2].ravel() == raw[2048:]
    ).all()


# -- CUB-200-2011 ---------------------------------------------------------------------------
def test_cub200_fetched_and_read(tmp_path, data_root, monkeypatch):
    classes = cub_classes(3)
    write_cub(
        tmp_path / "src",
        classes,
        {c: [("a.jpg", True), ("b.jpg", False), ("c.jpg", True)] for c in classes},
    )
    www = tmp_path / "www"
    www.mkdir()
    make_tar(tmp_path / "src" / "CUB_200_2011", www / "CUB_200_2011.tgz", "CUB_200_2011")
    serve_and_fetch(
        monkeypatch,
        "cub200",
        www,
        list(DATASETS["cub200"].files),
        data_root,
        cut={"/CUB_200_2011.tgz"},
    )
    data = read_cub200()
    assert data.class_names == classes
    assert (len(data.train), len(data.test)) == (6, 3)
    assert data.test.keys[0] == "CUB_200_2011/images/001.Bird_1/b.jpg"
    assert data.train.loader(data.train.keys[0]).mode == "RGB"


def test_fetch_with_a_bad_checksum_fails_with_one_message(tmp_path, data_root, monkeypatch, capsys):
    write_cifar100(tmp_path / "src")
    www = tmp_path / "www"
    www.mkdir()
    make_tar(
        tmp_path / "src" / "cifar-100-python", www / "cifar-100-python.tar.gz", "cifar-100-python"
    )
    with http_server(www) as (url, _):
        spec = DATASETS["cifar100"]
        bad = dataclasses.replace(
            spec.files[0], url=f"{url}/cifar-100-python.tar.gz"
        )  # the real md5
        monkeypatch.setitem(DATASETS, "cifar100", dataclasses.replace(spec, files=(bad,)))
        assert main(["fetch", "cifar100", "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "expected eb9058c3a382ffc7106e4002c42a8d85" in err and "Traceback" not in err
    assert not (data_root / "cifar-100-python").exists()
    assert not list((data_root / ".downloads").glob("*"))


# -- ImageNet-R / ImageNet-A (original layout, seeded or listed 80/20 split) ----------------
@pytest.mark.parametrize(
    ("name", "reader"), [("imagenet-r", read_imagenet_r), ("imagenet-a", read_imagenet_a)]
)
def test_imagenet_variants_fetched_and_split_80_20(tmp_path, data_root, monkeypatch, name, reader):
    wnids = ["n01443537", "n01484850", "n01494475"]
    write_class_tree(tmp_path / "src" / name, wnids, per_class=10)
    www = tmp_path / "www"
    www.mkdir()
    spec_file = DATASETS[name].files[0]
    make_tar(tmp_path / "src" / name, www / spec_file.filename, name)
    serve_and_fetch(monkeypatch, name, www, [spec_file], data_root)
    data = reader()
    assert data.class_names == wnids
    assert (len(data.train), len(data.test)) == (24, 6)
    assert np.bincount(data.test.labels).tolist() == [2, 2, 2]
    assert not set(data.train.keys) & set(data.test.keys)
    assert data.info["split_list_sha256"] == reader().info["split_list_sha256"]


def test_imagenet_r_split_list_is_used_and_hash_checked(tmp_path, data_root):
    write_class_tree(data_root / "imagenet-r", ["n1", "n2"], per_class=3)
    lines = [
        "train\timagenet-r/n1/img0.png",
        "test\timagenet-r/n1/img1.png",
        "train\timagenet-r/n1/img2.png",
        "test\timagenet-r/n2/img0.png",
        "train\timagenet-r/n2/img1.png",
        "train\timagenet-r/n2/img2.png",
    ]
    split = tmp_path / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    data = read_imagenet_r(split_file=split)
    assert sorted(data.test.keys) == ["imagenet-r/n1/img1.png", "imagenet-r/n2/img0.png"]
    assert data.info["split_list_sha256"] == list_digest(sorted(lines))
    from clbench.scenarios.readers.base import read_split_list

    with pytest.raises(ClbenchError, match="does not match its recorded hash"):
        read_split_list(split, "0" * 64)


def test_presplit_layout_is_read_for_manual_datasets(data_root):
    for part, per in (("train", 3), ("test", 1)):
        write_class_tree(data_root / "objectnet" / part, ["alarm_clock", "banana"], per_class=per)
    data = read_objectnet()
    assert data.class_names == ["alarm_clock", "banana"]
    assert (len(data.train), len(data.test)) == (6, 2)
    assert data.test.keys[0] == "objectnet/test/alarm_clock/img0.png"


def test_presplit_test_classes_must_exist_in_train(data_root):
    write_class_tree(data_root / "vtab" / "train", ["a"], per_class=1)
    write_class_tree(data_root / "vtab" / "test", ["a", "b"], per_class=1)
    with pytest.raises(ClbenchError, match="classes missing from train"):
        read_vtab()


# -- DomainNet ------------------------------------------------------------------------------
def test_domainnet_fetched_and_read(tmp_path, data_root, monkeypatch):
    write_domainnet(tmp_path / "src", list(DOMAINS), ["aircraft_carrier", "airplane"], per_class=1)
    www = tmp_path / "www"
    www.mkdir()
    files = list(DATASETS["domainnet"].files)
    for f in files:
        if f.filename.endswith(".zip"):
            domain = f.filename.removesuffix(".zip")
            zip_folder(tmp_path / "src" / "domainnet" / domain, www / f.filename, domain)
        else:
            shutil.copy(tmp_path / "src" / "domainnet" / f.filename, www / f.filename)
    serve_and_fetch(monkeypatch, "domainnet", www, files, data_root)
    data = read_domainnet()
    assert list(data) == list(DOMAINS)
    sketch = data["sketch"]
    assert sketch.class_names == ["aircraft_carrier", "airplane"]
    assert sketch.train.keys.tolist() == [
        "domainnet/sketch/aircraft_carrier/sketch_000_train0.png",
        "domainnet/sketch/airplane/sketch_001_train0.png",
    ]
    assert set(sketch.test.domains) == {"sketch"}
    assert sketch.test.loader(sketch.test.keys[1]).size == (4, 4)


# -- CORe50 ---------------------------------------------------------------------------------
def test_core50_fetched_and_read(tmp_path, data_root, monkeypatch):
    write_core50(tmp_path / "src", objects=3, per=2)
    www = tmp_path / "www"
    www.mkdir()
    zip_folder(
        tmp_path / "src" / "core50" / "core50_128x128", www / "core50_128x128.zip", "core50_128x128"
    )
    serve_and_fetch(monkeypatch, "core50", www, list(DATASETS["core50"].files), data_root)
    data = read_core50()
    assert (len(data.train), len(data.test)) == (8 * 3 * 2, 3 * 3 * 2)
    assert set(data.test.domains) == {"s3", "s7", "s10"}
    assert data.train.keys[0] == "core50/core50_128x128/s1/o1/C_01_01_000.png"
    assert data.num_classes == 50 and data.train.labels.max() == 2


# -- miniImageNet ---------------------------------------------------------------------------
def test_miniimagenet_csv_splits_and_cec_fetch(tmp_path, data_root, monkeypatch):
    from tests.dataset_layouts import write_png

    wnids = ["n01532829", "n01558993"]
    for w in wnids:
        for i in range(3):
            write_png(data_root / "miniimagenet" / "images" / f"{w}{i:08d}.jpg", i)
    www = tmp_path / "www"
    www.mkdir()
    (www / "train.csv").write_text(
        "filename,label\n" + "".join(f"{w}{i:08d}.jpg,{w}\n" for w in wnids for i in (0, 1))
    )
    (www / "test.csv").write_text(
        "filename,label\n" + "".join(f"{w}00000002.jpg,{w}\n" for w in reversed(wnids))
    )
    with http_server(www) as (url, server):
        local = tuple(
            dataclasses.replace(f, url=f"{url}/{f.filename}", checksum=digest(www / f.filename))
            for f in mini_module.CEC_SPLITS
        )
        monkeypatch.setattr(mini_module, "CEC_SPLITS", local)
        data = read_miniimagenet()
    assert data.class_names == wnids
    assert data.test.labels.tolist() == [1, 0]
    assert data.train.keys[0] == "miniimagenet/images/n0153282900000000.jpg"
    assert (data_root / "miniimagenet" / "split" / "cec" / "train.csv").exists()


# -- Fashion-MNIST --------------------------------------------------------------------------
def test_fashion_mnist_idx_fetched_and_read(tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(
        "clbench.scenarios.readers.fashion_mnist.DEBIAN_FOLDER", tmp_path / "no-debian"
    )
    monkeypatch.setitem(
        DATASETS, "fashion-mnist", dataclasses.replace(DATASETS["fashion-mnist"], system_markers=())
    )
    www = tmp_path / "www"
    rng = np.random.default_rng(0)
    images = {
        "train": rng.integers(0, 255, (20, 28, 28)),
        "t10k": rng.integers(0, 255, (10, 28, 28)),
    }
    for prefix, arr in images.items():
        write_idx(www / f"{prefix}-images-idx3-ubyte.gz", arr)
        write_idx(www / f"{prefix}-labels-idx1-ubyte.gz", np.arange(len(arr)) % 10)
    serve_and_fetch(
        monkeypatch, "fashion-mnist", www, list(DATASETS["fashion-mnist"].files), data_root
    )
    data = read_fashion_mnist()
    assert (len(data.train), len(data.test)) == (20, 10)
    assert np.asarray(data.train.loader("train/3"))[..., 0].tolist() == images["train"][3].tolist()
    assert data.class_names[9] == "ankle boot"


def test_idx_reader_rejects_truncated_files(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((4, 2, 2)))
    with gzip.open(tmp_path / "x.gz") as handle:
        raw = handle.read()
    with gzip.open(tmp_path / "y.gz", "wb") as handle:
        handle.write(raw[:-3])
    with pytest.raises(ClbenchError, match="truncated"):
        read_idx(tmp_path / "y.gz")


@pytest.mark.skipif(not DEBIAN_FOLDER.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_debian_package_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    data = read_fashion_mnist()
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert np.bincount(data.test.labels).tolist() == [1000] * 10


# -- the missing-data message ---------------------------------------------------------------
def test_missing_downloadable_dataset_names_what_where_and_the_command(data_root):
    with pytest.raises(DataMissingError) as info:
        read_cifar100()
    text = str(info.value)
    assert "CIFAR-100 not found" in text
    assert str(data_root / "cifar-100-python" / "train") in text
    assert f"clbench fetch cifar100 --data-root {data_root}" in text


def test_missing_manual_dataset_names_the_page(data_root):
    with pytest.raises(DataMissingError) as info:
        read_objectnet()
    text = str(info.value)
    assert "ObjectNet" in text and str(data_root / "objectnet" / "train") in text
    assert "https://github.com/sun-hailong/LAMDA-PILOT" in text and "licence" in text


@pytest.mark.parametrize(
    "scenario",
    [
        "cifar100",
        "imagenet-r",
        "cub200",
        "objectnet",
        "vtab",
        "domainnet",
        "core50",
        "miniimagenet-fscil",
    ],
)
def test_cli_run_on_absent_benchmark_prints_one_clear_message(scenario, data_root, capsys):
    assert main(["run", "--scenario", scenario, "--data-root", str(data_root), "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "not found: looked for" in err and str(data_root) in err
    assert "Traceback" not in err
    assert "clbench fetch" in err or "by hand from" in err
