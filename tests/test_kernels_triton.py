"""The Triton kernels against the torch path, on CPU through ``TRITON_INTERPRET=1``.

Sizes are tiny (the interpreter runs every tile op in numpy) but chosen to
cross tile edges: 16-wide tiles here, so 40 dims, 20 prototypes and 100 bank
rows all leave partial tiles and several programs per axis.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

import clbench.kernels as kernels
from clbench.kernels import torch_ops
from tests.kernel_reference import ref_neighbours

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def tri():
    """triton_ops with kernels built by the interpreter (tests/conftest.py sets it up)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET=1 was unset before triton was imported")
    return importlib.import_module("clbench.kernels.triton_ops")


def rand(*shape, seed=0, mean=0.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) + mean


def close(a, b, tol=1e-5):
    assert a.shape == b.shape
    scale = max(b.double().abs().max().item(), 1.0)
    assert (a.double() - b.double()).abs().max().item() <= tol * scale


@pytest.mark.parametrize("normalize", [False, True])
def test_class_stats(tri, normalize):
    x = rand(40, 70, seed=1, mean=2.0).T  # (70, 40), non-contiguous
    y = torch.randint(0, 4, (70,), generator=torch.Generator().manual_seed(2))
    got = tri.class_stats(x, y, 6, normalize=normalize, outer=True)  # classes 4, 5 empty
    want = torch_ops.class_stats(x, y, 6, normalize=normalize, outer=True)
    assert torch.equal(got.counts, want.counts)
    close(got.sums, want.sums, 1e-6)
    close(got.outer, want.outer, 1e-6)
    more = tri.class_stats(x[:30].half(), y[:30], 6, stats=got)
    close(more.sums, torch_ops.class_stats(x[:30].half(), y[:30], 6, stats=want).sums, 1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "linear"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_prototype_scores_and_argmax(tri, metric, dtype):
    q = rand(40, 20, seed=3).T.to(dtype)  # (20, 40), non-contiguous
    p = rand(20, 40, seed=4).to(dtype)
    p[7] = 0  # an empty class: cosine 0, not NaN
    bias = rand(20, seed=5) if metric == "linear" else None
    want = torch_ops.prototype_scores(q, p, metric, bias)
    close(tri.prototype_scores(q, p, metric, bias), want)
    assert torch.equal(tri.prototype_predict(q, p, metric, bias), want.argmax(1))
    assert torch.equal(tri.prototype_predict(q[:1], p, metric, bias), want[:1].argmax(1))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_over_many_tiles(tri, metric):
    q, bank = rand(9, 40, seed=6), rand(40, 100, seed=7).T  # 7 bank tiles over 4 slices
    values, indices = tri.knn_search(q, bank, 5, metric)
    want_values, want_indices = torch_ops.knn_search(q, bank, 5, metric)
    assert torch.equal(indices, want_indices)
    close(values, want_values)


def test_knn_ties_go_to_the_lower_index(tri):
    bank = rand(12, 24, seed=8).repeat(4, 1)  # each row at i, i+12, i+24, i+36
    q = rand(3, 24, seed=9)
    for metric in ("cosine", "euclidean"):
        values, indices = tri.knn_search(q, bank, 6, metric)
        want_values, want_indices = ref_neighbours(q, bank, 6, metric)  # stable: lower first
        assert torch.equal(indices, want_indices)
        close(values, want_values)


def test_knn_k_larger_than_bank_one_query_half_bank(tri):
    q, bank = rand(1, 24, seed=10), rand(7, 24, seed=11).half()
    values, indices = tri.knn_search(q, bank, 10, "euclidean")
    want_values, want_indices = torch_ops.knn_search(q, bank, 10, "euclidean")
    assert values.shape == (1, 7) and torch.equal(indices, want_indices)
    close(values, want_values)


def test_knn_k_64(tri):
    q, bank = rand(4, 16, seed=12), rand(80, 16, seed=13)
    values, indices = tri.knn_search(q, bank, 64, "cosine")
    assert torch.equal(indices, torch_ops.knn_search(q, bank, 64, "cosine")[1])


@pytest.mark.parametrize("vote", ["majority", "distance"])
def test_knn_votes_through_the_dispatch(tri, vote, monkeypatch):
    q, bank = rand(5, 24, seed=14), rand(60, 24, seed=15)
    labels = torch.randint(0, 4, (60,), generator=torch.Generator().manual_seed(16))
    monkeypatch.setenv("CLBENCH_KERNELS", "torch")
    want = kernels.knn_scores(q, bank, labels, 5, k=7, metric="euclidean", vote=vote)
    monkeypatch.setenv("CLBENCH_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.backend_name(q) == "triton"
    close(kernels.knn_scores(q, bank, labels, 5, k=7, metric="euclidean", vote=vote), want)
