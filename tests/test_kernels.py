"""The torch kernels (CPU path) against naive float64 references, and the dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import clbench.kernels as kernels
from clbench.errors import ConfigError
from clbench.kernels import torch_ops
from tests.kernel_reference import (
    ref_class_stats,
    ref_neighbours,
    ref_scores,
    ref_votes,
    within_class_scatter,
)


def features(rows, dims=24, seed=0, mean=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, dims, generator=g) + mean


def labels(rows, classes, seed=1):
    return torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(seed))


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.double() - b.double()).abs().max().item()
    scale = max(b.double().abs().max().item(), 1.0)
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} x {scale:.3g}"


# --- statistics ---------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_class_stats_match_reference(normalize):
    x, y = features(300), labels(300, 5)
    y[y == 3] = 0  # class 3 has no samples
    stats = kernels.class_stats(x, y, 6, normalize=normalize, outer=True)
    counts, sums, outer = ref_class_stats(x, y, 6, normalize)
    assert torch.equal(stats.counts, counts)
    assert stats.counts[3] == 0 and stats.counts[5] == 0
    close(stats.sums, sums, 1e-6)
    close(stats.outer, outer, 1e-6)
    assert torch.equal(stats.means[3], torch.zeros(24, dtype=torch.float64))
    assert stats.sums.dtype == stats.outer.dtype == torch.float64


def test_class_stats_without_outer_leaves_it_none():
    stats = kernels.class_stats(features(10), labels(10, 2), 2)
    assert stats.outer is None and stats.total == 10


def test_incremental_equals_batch_for_lda(monkeypatch):
    """Batches added one by one give the within-class scatter of one pass, to 1e-5,
    even with a large common mean (post-ReLU features) and several blocks per call."""
    monkeypatch.setattr(torch_ops, "STATS_BLOCK_ROWS", 128)
    x, y = features(2000, 32, mean=4.0) * 0.3, labels(2000, 7)
    batch = kernels.class_stats(x, y, 7, outer=True)
    parts = None
    for start, stop, seen in [(0, 300, 3), (300, 1100, 5), (1100, 2000, 7)]:
        yy = y[start:stop].clamp_max(seen - 1)
        y[start:stop] = yy
        parts = kernels.class_stats(x[start:stop], yy, seen, outer=True, stats=parts)
    batch = kernels.class_stats(x, y, 7, outer=True)
    assert parts.num_classes == 7
    assert torch.equal(parts.counts, batch.counts)
    close(parts.sums, batch.sums, 1e-7)
    reference = within_class_scatter(*ref_class_stats(x, y, 7))
    close(within_class_scatter(parts.counts, parts.sums, parts.outer), reference, 1e-5)
    close(within_class_scatter(batch.counts, batch.sums, batch.outer), reference, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_class_stats_half_inputs_accumulate_in_fp32(dtype):
    x, y = features(5000, 16, mean=1.0).to(dtype), labels(5000, 3)
    stats = kernels.class_stats(x, y, 3, outer=True)
    counts, sums, outer = ref_class_stats(x.float(), y, 3)
    close(stats.sums, sums, 1e-5)  # fp16/bf16 accumulation would be off by ~1e-3
    close(stats.outer, outer, 1e-5)


def test_class_stats_non_contiguous_inputs():
    base = features(64, 40)
    x = base.T[:, ::2]  # (40, 32), strided both ways
    y = labels(80, 4)[::2]
    stats = kernels.class_stats(x, y, 4, normalize=True, outer=True)
    counts, sums, outer = ref_class_stats(x, y, 4, normalize=True)
    close(stats.sums, sums, 1e-6)
    close(stats.outer, outer, 1e-6)


def test_class_stats_bad_input():
    with pytest.raises(ConfigError, match="outside 0..2"):
        kernels.class_stats(features(4), torch.tensor([0, 1, 2, 3]), 3)
    stats = kernels.class_stats(features(4, 8), torch.tensor([0, 1, 1, 0]), 2)
    with pytest.raises(ConfigError, match="existing statistics"):
        kernels.class_stats(features(4, 9), torch.tensor([0, 1, 1, 0]), 2, stats=stats)
    with pytest.raises(ConfigError, match="2-D"):
        kernels.class_stats(torch.zeros(4), torch.zeros(4), 1)


# --- prototype scores ---------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "linear"])
def test_prototype_scores_match_reference(metric, monkeypatch):
    monkeypatch.setattr(torch_ops, "QUERY_BLOCK_ROWS", 16)  # several query blocks
    q, p = features(50, seed=2), features(7, seed=3)
    p[4] = 0  # an empty class's zero prototype: cosine 0, not NaN
    bias = torch.randn(7) if metric == "linear" else None
    scores = kernels.prototype_scores(q, p, metric, bias)
    assert scores.dtype == torch.float32 and not scores.isnan().any()
    close(scores, ref_scores(q, p, metric, bias), 1e-5)
    predicted = kernels.prototype_predict(q, p, metric, bias)
    assert torch.equal(predicted, ref_scores(q, p, metric, bias).argmax(1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_prototype_scores_half_and_strided(dtype):
    q = features(30, 48, seed=4).to(dtype)[::3, ::2]  # (10, 24), non-contiguous
    p = features(5, 24, seed=5).to(dtype)
    close(
        kernels.prototype_scores(q, p, "euclidean"),
        ref_scores(q.float(), p.float(), "euclidean"),
        1e-5,
    )


def test_prototype_one_query_and_bad_input():
    q, p = features(1, seed=6), features(3, seed=7)
    assert kernels.prototype_predict(q, p).shape == (1,)
    with pytest.raises(ConfigError, match="unknown metric"):
        kernels.prototype_scores(q, p, "manhattan")
    with pytest.raises(ConfigError, match="different feature sizes"):
        kernels.prototype_scores(q, features(3, 8))
    with pytest.raises(ConfigError, match="one entry per prototype"):
        kernels.prototype_scores(q, p, "linear", torch.zeros(4))


# --- kNN ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 64])
def test_knn_search_streams_to_the_exact_answer(metric, k):
    q, bank = features(9, seed=8), features(500, seed=9)
    values, indices = kernels.knn_search(q, bank, k, metric, chunk=64)  # 8 bank blocks
    ref_values, ref_indices = ref_neighbours(q, bank, k, metric)
    assert torch.equal(indices, ref_indices)
    close(values, ref_values, 1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_merges_only_the_queries_a_block_improves(metric):
    # Query i's own copy sits in bank block i (chunk 8): each later block improves one query
    # only, and the running top-k of the others must survive the merge unchanged.
    q = features(4, seed=30)
    bank = features(32, seed=31)
    bank[[1, 10, 19, 28]] = q
    values, indices = kernels.knn_search(q, bank, 3, metric, chunk=8)
    ref_values, ref_indices = ref_neighbours(q, bank, 3, metric)
    assert indices[:, 0].tolist() == [1, 10, 19, 28]
    assert torch.equal(indices, ref_indices)
    close(values, ref_values, 1e-5)


def test_knn_k_larger_than_bank_and_one_query():
    q, bank = features(1, seed=10), features(3, seed=11)
    values, indices = kernels.knn_search(q, bank, 10, "euclidean")
    assert values.shape == (1, 3)
    assert sorted(indices[0].tolist()) == [0, 1, 2]
    votes = kernels.knn_scores(q, bank, torch.tensor([0, 1, 1]), 4, k=10)
    assert votes[0, 1] == pytest.approx(2.0) and votes[0, 3] == 0


def test_knn_ties_return_the_tied_scores():
    """Duplicate bank rows tie exactly: any of them is a right answer, the scores must match."""
    bank = features(20, seed=12).repeat(3, 1)  # every row three times
    q = features(4, seed=13)
    for metric in ("cosine", "euclidean"):
        values, indices = kernels.knn_search(q, bank, 6, metric, chunk=16)
        ref_values, _ = ref_neighbours(q, bank, 6, metric)
        close(values, ref_values, 1e-5)
        # the six neighbours are the three copies of the two nearest rows
        for row in range(4):
            assert len(set((indices[row] % 20).tolist())) == 2


def test_knn_vote_ties_go_to_the_nearest_neighbour():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    bank_labels = torch.tensor([2, 0, 0, 2])
    q = torch.tensor([[1.0, 0.05]])
    votes = kernels.knn_scores(q, bank, bank_labels, 3, k=4, vote="majority")
    assert votes[0].argmax() == 2  # two votes each; the nearest is class 2


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("vote", ["majority", "distance"])
def test_knn_scores_match_reference(metric, vote):
    q, bank = features(12, seed=14), features(300, seed=15)
    bank_labels = labels(300, 6, seed=16)
    votes = kernels.knn_scores(q, bank, bank_labels, 8, k=7, metric=metric, vote=vote, chunk=50)
    close(votes, ref_votes(q, bank, bank_labels, 8, 7, metric, vote), 1e-5)
    assert votes[:, 6:].abs().max() == 0  # classes without bank entries get nothing


def test_knn_half_precision_and_non_contiguous():
    bank = features(400, 64, seed=17).to(torch.bfloat16)[:, ::2]
    q = features(10, 32, seed=18).T.contiguous().T  # column-major
    values, indices = kernels.knn_search(q, bank, 8, "cosine", chunk=100)
    ref_values, ref_indices = ref_neighbours(q, bank.float(), 8, "cosine")
    assert torch.equal(indices, ref_indices)
    close(values, ref_values, 1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_with_precomputed_bank_norms(metric):
    q, bank = features(6, seed=21), features(90, seed=22)
    bank[5] = 0  # a zero row: cosine 0, not NaN
    norms = kernels.row_norms(bank.half())
    close(norms, bank.half().float().norm(dim=1), 1e-6)
    values, indices = kernels.knn_search(
        q, bank, 4, metric, chunk=32, bank_norms=kernels.row_norms(bank)
    )
    ref_values, ref_indices = ref_neighbours(q, bank, 4, metric)
    assert torch.equal(indices, ref_indices)
    close(values, ref_values, 1e-5)
    with pytest.raises(ConfigError, match="bank_norms"):
        kernels.knn_search(q, bank, 4, metric, bank_norms=norms[:5])


def test_knn_query_blocks(monkeypatch):
    monkeypatch.setattr(torch_ops, "QUERY_BLOCK_ROWS", 4)
    q, bank = features(11, seed=19), features(100, seed=20)
    values, indices = kernels.knn_search(q, bank, 3, "euclidean")
    assert torch.equal(indices, ref_neighbours(q, bank, 3, "euclidean")[1])
    assert kernels.knn_search(q[:0], bank, 3)[0].shape == (0, 3)


def test_knn_bad_input():
    q, bank, y = features(2), features(5), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ConfigError, match="k=65"):
        kernels.knn_search(q, bank, 65)
    with pytest.raises(ConfigError, match="k=0"):
        kernels.knn_search(q, bank, 0)
    with pytest.raises(ConfigError, match="empty"):
        kernels.knn_search(q, bank[:0], 3)
    with pytest.raises(ConfigError, match="unknown kNN metric"):
        kernels.knn_search(q, bank, 3, "linear")
    with pytest.raises(ConfigError, match="unknown vote"):
        kernels.knn_scores(q, bank, y, 2, vote="softmax")
    with pytest.raises(ConfigError, match="bank labels"):
        kernels.knn_scores(q, bank, y[:4], 2)


# --- dispatch -----------------------------------------------------------------


def test_cpu_tensors_use_the_torch_path(monkeypatch):
    monkeypatch.delenv("CLBENCH_KERNELS", raising=False)
    assert kernels.backend_name(torch.zeros(1)) == "torch"
    monkeypatch.setenv("CLBENCH_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert kernels.backend_name(torch.zeros(1)) == "torch"  # no GPU and no interpreter


def test_interpreter_opt_in_selects_triton(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("CLBENCH_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.backend_name(torch.zeros(1)) == "triton"
    monkeypatch.setenv("CLBENCH_KERNELS", "torch")
    assert kernels.backend_name(torch.zeros(1)) == "torch"


def test_kernels_import_and_run_without_triton():
    """Triton is an optional extra: a blocked import must not break the CPU path."""
    code = (
        "import sys\n"
        "sys.modules['triton'] = None  # what Python does for a package that is absent\n"
        "import torch, clbench.kernels as k\n"
        "s = k.class_stats(torch.ones(3, 2), torch.tensor([0, 1, 1]), 2)\n"
        "assert k.backend_name(torch.ones(1)) == 'torch' and s.counts.tolist() == [1.0, 2.0]\n"
        "assert sys.modules['triton'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_frozen_methods_call_the_kernels_across_tasks():
    """The spine's kNN and prototype learners give the kernels' answers after two tasks."""
    from clbench.methods.frozen import KNN, SimpleCIL

    x, y = features(60, seed=23), labels(60, 4, seed=24)
    knn, simple = KNN(k=5, metric="euclidean", vote="distance"), SimpleCIL()
    for learner in (knn, simple):
        learner.absorb(x[:30], y[:30].clamp_max(1), 2)
        learner.absorb(x[30:], y[30:], 4)
    y_all = torch.cat([y[:30].clamp_max(1), y[30:]])
    q = features(7, seed=25)
    expected = kernels.knn_scores(q, x, y_all, 4, k=5, metric="euclidean", vote="distance")
    close(knn.score(q), expected, 1e-6)
    close(knn.bank_norms, x.norm(dim=1), 1e-6)
    means = kernels.class_stats(x, y_all, 4).means.float()
    close(simple.score(q), kernels.prototype_scores(q, means, "cosine"), 1e-6)


def test_float64_features_give_exact_float64_statistics():
    """The LDA head asks for exact statistics by passing float64: no fp32 rounding."""
    from clbench.kernels import backend_name, class_stats

    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 24, generator=g, dtype=torch.float64) + 40.0
    y = torch.randint(0, 5, (500,), generator=g)
    stats = class_stats(x, y, 5, outer=True)
    torch.testing.assert_close(stats.outer, x.T @ x, rtol=1e-13, atol=0)
    sums = torch.zeros(5, 24, dtype=torch.float64).index_add_(0, y, x)
    torch.testing.assert_close(stats.sums, sums, rtol=1e-13, atol=0)
    assert backend_name(x) == "torch"
