"""The feature cache is keyed by content: changed images are extracted again, and no
file name (newlines, odd bytes) or damaged shard breaks it for later runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from clbench.data import FileLoader, Samples
from clbench.features import FeatureCache
from tests.test_features import CountingEncoder, to_tensor

CPU = torch.device("cpu")


def _image(path, value: int, size: int = 4) -> None:
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def _samples(root, names) -> Samples:
    return Samples("own-folder", names, list(range(len(names))), FileLoader(root))


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "same-mtime"])
def test_overwritten_images_are_extracted_again(tmp_path, keep_mtime):
    names = ["a.png", "b.png"]
    for i, name in enumerate(names):
        _image(tmp_path / name, 10 * i)
    before = FeatureCache(tmp_path / "cache").get(
        CountingEncoder(), "enc", _samples(tmp_path, names), to_tensor, CPU
    )
    stat = (tmp_path / "a.png").stat()
    _image(tmp_path / "a.png", 200)  # same name, same size, new content
    if keep_mtime:  # an overwrite inside one timestamp tick: only the content hash sees it
        os.utime(tmp_path / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    encoder = CountingEncoder()
    cache = FeatureCache(tmp_path / "cache")
    after = cache.get(encoder, "enc", _samples(tmp_path, names), to_tensor, CPU)
    assert encoder.seen == 1 and cache.stats.hits == 1  # only the changed image
    assert torch.equal(after[1], before[1])
    assert after[0, 0] == 200 and before[0, 0] == 0


def test_large_files_are_keyed_by_size_and_mtime(tmp_path, monkeypatch):
    import clbench.data

    monkeypatch.setattr(clbench.data, "HASHED_FILE_BYTES", 0)  # every file counts as large
    _image(tmp_path / "a.png", 5)
    FeatureCache(tmp_path / "c").get(
        CountingEncoder(), "e", _samples(tmp_path, ["a.png"]), to_tensor, CPU
    )
    _image(tmp_path / "a.png", 9, size=8)  # another size
    encoder = CountingEncoder()
    FeatureCache(tmp_path / "c").get(encoder, "e", _samples(tmp_path, ["a.png"]), to_tensor, CPU)
    assert encoder.seen == 1


def test_file_names_with_newlines_and_odd_bytes(tmp_path):
    names = ["new\nline.png", "tab\there.png", "plain.png"]
    if os.uname().sysname == "Linux":
        names.append(os.fsdecode(b"latin\xe9.png"))  # not UTF-8
    for i, name in enumerate(names):
        _image(tmp_path / name, i)
    first = FeatureCache(tmp_path / "cache").get(
        CountingEncoder(), "enc", _samples(tmp_path, names), to_tensor, CPU
    )
    encoder = CountingEncoder()
    cache = FeatureCache(tmp_path / "cache")  # a later run reads the shard back
    again = cache.get(encoder, "enc", _samples(tmp_path, names), to_tensor, CPU)
    assert encoder.seen == 0 and cache.stats.hits == len(names)
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: next(f.glob("*.keys.json")).write_text("[not json"),
        lambda f: next(f.glob("*.keys.json")).write_text('["only-one-key"]'),
        lambda f: next(f.glob("*.npy")).write_bytes(b"\x93NUMPY truncated"),
        lambda f: next(f.glob("*.npy")).unlink(),
    ],
    ids=["bad-json", "count-mismatch", "truncated-npy", "missing-npy"],
)
def test_damaged_shard_is_skipped_with_a_warning(tmp_path, damage, capsys):
    names = ["a.png", "b.png"]
    for i, name in enumerate(names):
        _image(tmp_path / name, i)
    FeatureCache(tmp_path / "cache").get(
        CountingEncoder(), "e", _samples(tmp_path, names), to_tensor, CPU
    )
    damage(next((tmp_path / "cache").iterdir()))
    encoder = CountingEncoder()
    FeatureCache(tmp_path / "cache").get(encoder, "e", _samples(tmp_path, names), to_tensor, CPU)
    assert encoder.seen == 2  # extracted again
    assert "skipping unreadable feature-cache shard" in capsys.readouterr().err


def test_in_memory_arrays_are_keyed_by_pixels(tmp_path):
    from tests.helpers import array_data

    data = array_data(2, 2, 1)
    FeatureCache(tmp_path).get(CountingEncoder(), "e", data.train, to_tensor, CPU)
    data.train.loader.images[0] += 1  # the dataset file changed under the same keys
    encoder = CountingEncoder()
    FeatureCache(tmp_path).get(encoder, "e", data.train, to_tensor, CPU)
    assert encoder.seen == 1
