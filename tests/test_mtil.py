"""MTIL / X-TAIL: the eleven readers on tiny torchvision-layout fixtures, the stream
builder, and the Transfer / Average / Last metrics against the reference definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench import metrics
from clbench.errors import ClbenchError, ConfigError, DataMissingError
from clbench.scenarios.mtil import mtil, multi_domain, per_class, xtail
from clbench.scenarios.readers import mtil as readers
from tests.dataset_layouts import write_png
from tests.mtil_layouts import write_all, write_sun397


@pytest.fixture
def mtil_root(tmp_path, monkeypatch):
    write_all(tmp_path)
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    return tmp_path


def _images_exist(root, data):
    for part in (data.train, data.test):
        if isinstance(part.loader, readers.ArrayLoader):
            continue
        assert all((root / k).is_file() for k in part.keys), data.name


def test_each_reader_reads_its_layout(mtil_root):
    got = {name: read() for name, read in readers.MTIL_ORDER.items()}
    assert list(got) == [
        "aircraft", "caltech101", "cifar100", "dtd", "eurosat", "flowers",
        "food", "mnist", "oxford-pet", "cars", "sun397",
    ]  # fmt: skip
    for data in got.values():
        _images_exist(mtil_root, data)
        assert data.train.labels.max() < data.num_classes
    air = got["aircraft"]
    assert air.class_names == ["707-320", "A300B4", "Cessna 172"]
    assert (len(air.train), len(air.test)) == (6, 3)
    assert air.train.keys[1] == "fgvc-aircraft-2013b/data/images/1000001.jpg"
    assert list(air.train.labels) == [0, 1, 2, 0, 1, 2]
    cal = got["caltech101"]  # background class dropped, 15 images split 12/3
    assert cal.class_names == ["Faces easy", "accordion", "yin yang"]
    assert (len(cal.train), len(cal.test)) == (12, 3)
    dtd = got["dtd"]
    assert dtd.class_names == ["banded", "zigzagged"] and (len(dtd.train), len(dtd.test)) == (6, 4)
    flowers = got["flowers"]  # names from torchvision; 1-based labels of trnid/tstid images
    assert flowers.num_classes == 102 and flowers.class_names[0] == "pink primrose"
    assert list(flowers.train.labels) == [0, 1, 2] and list(flowers.test.labels) == [0, 1, 2]
    assert flowers.test.keys[0] == "flowers-102/jpg/image_00007.jpg"
    food = got["food"]
    assert food.class_names == ["apple pie", "ramen"] and len(food.train) == 6
    assert food.train.keys[0] == "food-101/images/apple_pie/100.jpg"
    mnist = got["mnist"]
    assert mnist.class_names == [str(d) for d in range(10)] and len(mnist.test) == 10
    assert mnist.train.loader(mnist.train.keys[3]).size == (28, 28)
    pet = got["oxford-pet"]
    assert pet.class_names == ["Abyssinian", "American Bulldog", "Basset Hound"]
    assert (len(pet.train), len(pet.test)) == (9, 6)
    cars = got["cars"]
    assert cars.class_names == ["AM General Hummer SUV 2000", "Audi R8 Coupe 2012"]
    assert (
        list(cars.train.labels) == [0, 1, 0, 1]
        and cars.test.keys[0] == "stanford_cars/cars_test/00001.jpg"
    )
    sun = got["sun397"]
    assert sun.class_names == ["abbey", "apartment building/outdoor", "beach"]
    assert (len(sun.train), len(sun.test)) == (12, 3)
    assert sorted(set(sun.train.labels) | set(sun.test.labels)) == [0, 1, 2]


def test_random_splits_repeat_torch_random_split_with_seed_42():
    from torch.utils.data import random_split

    for n in (15, 101):
        train, test = readers.zscl_split(n)
        ref = random_split(range(n), [int(0.8 * n), n - int(0.8 * n)],
                           generator=torch.Generator().manual_seed(42))  # fmt: skip
        assert list(train) == list(ref[0].indices) and list(test) == list(ref[1].indices)


def test_missing_dataset_gives_the_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    with pytest.raises(DataMissingError) as err:
        readers.read_dtd()
    assert "Describable Textures (DTD) not found" in str(err.value)
    assert str(tmp_path / "dtd/dtd/labels/train1.txt") in err.value.hint


def test_sun397_image_outside_the_class_list_is_refused(tmp_path, monkeypatch):
    write_sun397(tmp_path)
    write_png(tmp_path / "SUN397/z/zoo/sun_x.jpg", 0)
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path))
    with pytest.raises(ClbenchError, match="in no class"):
        readers.read_sun397()


def test_mtil_stream_offsets_label_spaces_and_tests_unseen(mtil_root):
    scenario = mtil(shots=1, datasets=["aircraft", "dtd", "mnist"])
    assert scenario.task_incremental and scenario.evaluate_unseen
    assert [t.name for t in scenario.tasks] == ["aircraft", "dtd", "mnist"]
    assert [list(t.classes) for t in scenario.tasks] == [[0, 1, 2], [3, 4], list(range(5, 15))]
    assert scenario.tasks[1].class_names == ("banded", "zigzagged")
    assert scenario.class_names[3:5] == ["banded", "zigzagged"]
    # Each dataset's own prompt (ZSCL's first template), on its task and in the protocol.
    assert [t.prompt_template for t in scenario.tasks] == [
        "a photo of a {}, a type of aircraft.",
        "a photo of a {} texture.",
        'a photo of the number: "{}".',
    ]
    assert scenario.tasks[2].train_view().prompt_template == 'a photo of the number: "{}".'
    assert scenario.protocol["prompt_templates"]["dtd"] == "a photo of a {} texture."
    for t in scenario.tasks:
        assert set(t.train.labels) <= set(t.classes) and set(t.test.labels) <= set(t.classes)
        assert np.bincount(t.train.labels - t.classes[0]).max() == 1  # one shot per class
    full = xtail(shots=None, datasets=["aircraft", "dtd"])
    assert not full.task_incremental and not full.evaluate_unseen
    assert len(full.tasks[0].train) == 6
    with pytest.raises(ConfigError, match="unknown MTIL dataset"):
        xtail(datasets=["cifar100"])  # X-TAIL has no CIFAR100


def test_per_class_draws_k_of_each_class_reproducibly(mtil_root):
    data = readers.read_caltech101()
    a, b = per_class(data.train, 2, 1), per_class(data.train, 2, 1)
    assert list(a.keys) == list(b.keys) and np.bincount(a.labels).tolist() == [2, 2, 2]
    assert per_class(data.train, None, 1) is data.train
    assert len(per_class(data.train, 10, 1)) == len(data.train)  # fewer than k: all of them
    with pytest.raises(ConfigError):
        per_class(data.train, 0, 1)


def _reference_mtil(acc: np.ndarray) -> dict[str, float]:
    """ZSCL/CoDyRA's own computation (their main scripts), written out independently."""
    upper = np.ma.masked_equal(np.triu(acc, k=1), 0)
    return {
        "transfer": float(np.mean(np.mean(upper, axis=0))),
        "average": float(np.mean(np.mean(acc, axis=0))),
        "last": float(np.mean(acc[-1, :])),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mtil_metrics_equal_the_reference_definitions(seed):
    acc = np.random.default_rng(seed).uniform(0.05, 1.0, size=(5, 5))
    ours, ref = metrics.mtil_metrics(acc), _reference_mtil(acc)
    for key in ("transfer", "average", "last"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12)
    # by hand on a 3x3 matrix: Transfer = mean(A01, mean(A02, A12))
    hand = np.array([[0.5, 0.2, 0.1], [0.6, 0.7, 0.3], [0.4, 0.5, 0.9]])
    out = metrics.mtil_metrics(hand)
    assert out["transfer"] == pytest.approx((0.2 + (0.1 + 0.3) / 2) / 2)
    assert out["average"] == pytest.approx(hand.mean())
    assert out["last"] == pytest.approx((0.4 + 0.5 + 0.9) / 3)


def test_a_zero_shot_zero_counts_here_and_is_dropped_by_the_reference():
    acc = np.array([[0.5, 0.0, 0.2], [0.6, 0.7, 0.4], [0.4, 0.5, 0.9]])
    assert metrics.mtil_metrics(acc)["transfer"] == pytest.approx((0.0 + 0.3) / 2)
    assert _reference_mtil(acc)["transfer"] == pytest.approx((0.3 + 0.3) / 2)  # masked 0


def test_summarize_reports_mtil_metrics_for_fully_tested_runs():
    counts = np.array([10, 10])
    correct = np.array([[8, 3], [6, 9]])
    out = metrics.summarize(correct, counts, evaluate_unseen=True)
    assert out["mtil_transfer"] == pytest.approx(0.3)
    assert out["mtil_average"] == pytest.approx((0.7 + 0.6) / 2)
    assert out["mtil_last"] == pytest.approx(0.75)
    partial = np.array([[8, -1], [6, 9]], dtype=float)
    partial[0, 1] = np.nan
    assert "mtil_transfer" not in metrics.summarize(partial, counts, evaluate_unseen=True)
    assert "mtil_transfer" not in metrics.summarize(correct, counts)


def test_multi_domain_needs_a_dataset():
    with pytest.raises(ClbenchError):
        multi_domain([], "empty")
