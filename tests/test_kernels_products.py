"""The CPU matrix-product library choice: every library gives the same answers, the
choice is measured once and stored, and a bad setting is one clear error."""

from __future__ import annotations

import json

import pytest
import torch

import clbench.kernels as kernels
from clbench.errors import ConfigError
from clbench.kernels import products
from tests.kernel_reference import ref_neighbours, ref_scores

LIBRARIES = products.available_libraries()


def rand(rows, cols, seed):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("rows, cols", [(1, 300), (17, 1000), (300, 40)])
def test_every_library_computes_the_same_product(monkeypatch, library, rows, cols):
    monkeypatch.setenv("CLBENCH_MATMUL", library)
    a, b, bias = rand(rows, 64, 0), rand(cols, 64, 1), rand(1, cols, 2)[0]
    exact = a.double() @ b.double().T
    assert products.library_for(rows, cols) == library
    got = products.matmul_nt(a, b)
    assert got.dtype == torch.float32 and got.shape == (rows, cols)
    torch.testing.assert_close(got.double(), exact, rtol=1e-4, atol=1e-4)
    with_bias = products.matmul_nt(a, b, bias)
    torch.testing.assert_close(with_bias.double(), exact + bias.double(), rtol=1e-4, atol=1e-4)
    strided = products.matmul_nt(a, b.T.contiguous().T)  # a transposed (non-contiguous) operand
    torch.testing.assert_close(strided.double(), exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_and_prototypes_agree_with_the_reference_on_every_library(monkeypatch, library, metric):
    monkeypatch.setenv("CLBENCH_MATMUL", library)
    q, bank = rand(40, 32, 3), rand(2500, 32, 4)
    values, indices = kernels.knn_search(q, bank, 7, metric, chunk=1024)
    ref_values, ref_indices = ref_neighbours(q, bank, 7, metric)
    assert torch.equal(indices, ref_indices)
    torch.testing.assert_close(values.double(), ref_values, rtol=1e-4, atol=1e-4)
    protos = rand(12, 32, 5)
    scores = kernels.prototype_scores(q, protos, metric)
    torch.testing.assert_close(scores.double(), ref_scores(q, protos, metric), rtol=1e-4, atol=1e-4)


def test_float64_and_non_cpu_rules_keep_torch(monkeypatch):
    monkeypatch.setenv("CLBENCH_MATMUL", "numpy")
    a, b = rand(5, 8, 0).double(), rand(6, 8, 1).double()
    out = products.matmul_nt(a, b)
    assert out.dtype == torch.float64  # numpy would have returned float64 too, but via torch
    torch.testing.assert_close(out, a @ b.T)


def test_an_unknown_library_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("CLBENCH_MATMUL", "mkl")
    with pytest.raises(ConfigError, match="CLBENCH_MATMUL='mkl'") as info:
        products.matmul_nt(rand(2, 4, 0), rand(3, 4, 1))
    assert "torch" in info.value.hint and "onednn" in info.value.hint


def test_shape_classes_bucket_rows_and_columns():
    assert products.shape_class(1, 100) == "r0c0"
    assert products.shape_class(7, 100) == "r0c0"
    assert products.shape_class(8, 100) == "r1c0"
    assert products.shape_class(300, 5000) == "r2c1"
    assert products.shape_class(4096, 1000) == "r3c0"


def test_calibration_charges_a_library_for_the_slowdown_it_leaves(monkeypatch):
    """A library whose product is faster but slows the next torch op (OpenBLAS's spinning
    threads) loses the calibration when the two together are slower."""
    import time

    state = {"spinning": False}

    def product(library, a, b, bias):
        state["spinning"] = library == "numpy"
        time.sleep(0.002 if library == "numpy" else 0.004)

    def next_op():
        time.sleep(0.008 if state["spinning"] else 0.0)

    monkeypatch.setattr(products, "available_libraries", lambda: ("torch", "numpy"))
    monkeypatch.setattr(products, "_product", product)
    monkeypatch.setattr(products, "_SAMPLE_ROWS", {0: 1})  # one row class: fast
    monkeypatch.setattr(products, "_next_op", lambda: None)
    assert {e["library"] for e in products.calibrate().values()} == {"numpy"}  # product alone
    monkeypatch.setattr(products, "_next_op", next_op)  # the op after it, as calibrated
    table = products.calibrate()
    assert {e["library"] for e in table.values()} == {"torch"}
    assert all(e["seconds"]["numpy"] > e["seconds"]["torch"] for e in table.values())


def test_calibration_is_measured_once_stored_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CLBENCH_MATMUL", raising=False)
    products._calibration.cache_clear()
    calls = []
    real = products.calibrate

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(products, "calibrate", counting)
    try:
        chosen = products.library_for(256, 16384)
        assert chosen in LIBRARIES and len(calls) == 1
        stored = json.loads(products.calibration_file().read_text())
        table = stored["machines"][products.machine_key()]
        assert set(table) == {f"r{r}c{c}" for r in range(4) for c in range(2)}
        entry = table["r2c1"]
        assert entry["library"] == chosen
        assert entry["library"] == min(entry["seconds"], key=entry["seconds"].get)
        products._calibration.cache_clear()  # a new process: reads the file, no re-measure
        assert products.library_for(256, 16384) == chosen and len(calls) == 1
        table["r2c1"]["library"] = "torch"  # the stored choice is the one used
        products.calibration_file().write_text(json.dumps(stored))
        products._calibration.cache_clear()
        assert products.library_for(256, 16384) == "torch" and len(calls) == 1
    finally:
        products._calibration.cache_clear()


def test_an_unwritable_cache_still_calibrates(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CLBENCH_CACHE", str(blocker))  # a file where a folder should be
    monkeypatch.delenv("CLBENCH_MATMUL", raising=False)
    products._calibration.cache_clear()
    try:
        assert products.library_for(1, 10) in LIBRARIES
        assert "could not store" in capsys.readouterr().err
    finally:
        products._calibration.cache_clear()
