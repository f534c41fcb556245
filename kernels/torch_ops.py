"""Torch implementations of the frozen-feature kernels: the CPU path and the reference.

All three work on row blocks so that fp16/bf16 inputs are widened to fp32 one
block at a time (never a full-size fp32 copy), the large operand is read once,
and the kNN never holds more than a block of the query x bank score matrix.
"""

from __future__ import annotations

import torch

from clbench.errors import ConfigError
from clbench.kernels.common import (
    NORM_EPS,
    ClassStats,
    check_knn_inputs,
    check_prototype_inputs,
    check_stats_inputs,
)
from clbench.kernels.products import matmul_nt

# Rows of features per statistics block: 8192 x 768 fp32 is 24 MiB, so a block
# stays in the last-level cache between its class sums and its Gram product, and
# fp32 partial sums over a block stay well inside 1e-6 relative error.
STATS_BLOCK_ROWS = 8192
# fp32 Gram sums cover at most this many rows before a float64 flush.
GRAM_FLUSH_ROWS = 65536
# Query rows per block for prototype scoring and per kNN pass over the bank.
QUERY_BLOCK_ROWS = 4096
# Target size (elements) of one kNN score block: 4 Mi floats = 16 MiB; at most
# 16384 bank rows (48 MiB at 768 dims) per block, the fastest on 1-256 queries.
KNN_SCORE_BLOCK = 1 << 22
KNN_MIN_COLS, KNN_MAX_COLS = 1024, 16384


def fp32_rows(x: torch.Tensor, start: int, stop: int, normalize: bool) -> torch.Tensor:
    """Rows start:stop as fp32, L2-normalised if asked; a view when nothing changes.

    float64 rows stay float64: a caller that needs exact statistics (the LDA
    head, whose covariance solve amplifies rounding) asks by passing float64.
    """
    rows = x[start:stop]
    if rows.dtype not in (torch.float32, torch.float64):
        rows = rows.float()
    if normalize:
        inv = torch.linalg.vector_norm(rows, dim=1).clamp_min_(NORM_EPS).reciprocal_()
        rows = rows * inv[:, None]
    return rows


def class_stats(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    normalize: bool = False,
    outer: bool = False,
    stats: ClassStats | None = None,
) -> ClassStats:
    """Accumulate per-class counts and sums (and the pooled outer-product sum).

    One pass over row blocks: each block is widened/normalised once and summed
    per class into fp32 partial sums that are added in float64, so incremental
    updates equal one pass over all data. With ``outer`` every row is first
    shifted by one fixed vector m (the mean of the first rows), so the fp32 sums
    and the fp32 Gram product see only the spread of the data, not a large
    common mean (LDA's within-class scatter is a difference of large numbers);
    the exact float64 correction is added once at the end. float64 features
    are accumulated in float64 throughout (exact, about twice the cost).
    """
    labels = check_stats_inputs(features, labels, num_classes, stats)
    rows, dims = features.shape
    device = features.device
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    sums = torch.zeros(num_classes, dims, dtype=torch.float64, device=device)
    block = max(STATS_BLOCK_ROWS, 8 * num_classes)
    gram = _ShiftedGram(features, normalize, block) if outer and rows else None
    for start in range(0, rows, block):
        x = fp32_rows(features, start, start + block, normalize)
        if gram is not None:
            x = gram.add(x)
        sums += _class_sums(x, labels[start : start + block], num_classes)
    scatter = None
    if outer:
        scatter = torch.zeros(dims, dims, dtype=torch.float64, device=device)
        if gram is not None:
            scatter = gram.total(sums.sum(0), rows)
            sums.addr_(counts, gram.shift.double())
    result = ClassStats(counts, sums, scatter)
    return result if stats is None else stats.merge(result)


class _ShiftedGram:
    """Running sum of c c^T over rows, c = x - m for one fixed fp32 shift m.

    sum x x^T = sum c c^T + m d^T + d m^T + n m m^T with d = sum c holds exactly
    for any m, so only the Gram product of shifted rows runs in fp32 (flushed
    to float64 every ``GRAM_FLUSH_ROWS`` rows) and the correction is float64.
    """

    def __init__(self, features: torch.Tensor, normalize: bool, block: int) -> None:
        dims = features.shape[1]
        self.shift = fp32_rows(features, 0, min(block, 1024), normalize).mean(0)
        dtype = self.shift.dtype  # float64 inputs keep a float64 Gram (exact statistics)
        self.buffer = torch.empty(
            min(block, features.shape[0]), dims, dtype=dtype, device=features.device
        )
        self.fp32 = torch.zeros(dims, dims, dtype=dtype, device=features.device)
        self.fp64 = torch.zeros(dims, dims, dtype=torch.float64, device=features.device)
        self.pending = 0

    def add(self, x: torch.Tensor) -> torch.Tensor:
        """Adds the block's shifted Gram product; returns the shifted rows."""
        c = torch.sub(x, self.shift, out=self.buffer[: x.shape[0]])
        self.fp32.addmm_(c.T, c)
        self.pending += x.shape[0]
        if self.pending >= GRAM_FLUSH_ROWS:
            self.fp64 += self.fp32
            self.fp32.zero_()
            self.pending = 0
        return c

    def total(self, drift: torch.Tensor, rows: int) -> torch.Tensor:
        """sum x x^T in float64, given d = the float64 sum of all shifted rows."""
        shift = self.shift.double()
        out = self.fp64 + self.fp32
        return out.addr_(shift, drift).addr_(drift, shift).addr_(shift, shift, alpha=rows)


def _class_sums(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """fp32 per-class sums of the rows of x, as a sparse one-hot (C x n) times x.

    The sparse product adds whole rows with vector instructions; ``index_add_``
    scatters element by element and was 2.2-2.3x slower at 100k-1M rows
    (reports/kernels.md).
    """
    n = x.shape[0]
    rows = torch.stack([y, torch.arange(n, device=x.device)])
    one_hot = torch.sparse_coo_tensor(
        rows,
        torch.ones(n, dtype=x.dtype, device=x.device),
        (num_classes, n),
        check_invariants=False,
    )  # labels were range-checked once for the whole call
    return torch.sparse.mm(one_hot, x)


def _prototype_block(
    q: torch.Tensor,
    protos: torch.Tensor,
    metric: str,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Scores of fp32 query rows ``q``; ``protos`` and ``bias`` already prepared.

    cosine: ``protos`` are unit rows and the query norms divide the product
    afterwards (no normalised copy of the queries). euclidean: ``bias`` is
    -|p|^2 / 2 and the result is 2 (q.p - |p|^2 / 2) - |q|^2. linear: q.p + bias.
    """
    out = matmul_nt(q, protos, bias)
    if metric == "cosine":
        out.div_(torch.linalg.vector_norm(q, dim=1).clamp_min_(NORM_EPS)[:, None])
    elif metric == "euclidean":
        out.mul_(2.0).sub_(torch.linalg.vector_norm(q, dim=1).square_()[:, None])
    return out


def _prepare_prototypes(
    queries: torch.Tensor, prototypes: torch.Tensor, metric: str, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    check_prototype_inputs(queries, prototypes, metric, bias)
    protos = prototypes.to(queries.device, torch.float32)
    if metric == "cosine":
        protos = protos / torch.linalg.vector_norm(protos, dim=1).clamp_min(NORM_EPS)[:, None]
        return protos, None
    if metric == "euclidean":
        return protos, protos.pow(2).sum(1).mul_(-0.5)
    return protos, None if bias is None else bias.to(queries.device, torch.float32)


def prototype_scores(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores of each query against each prototype, float32 (higher is better).

    ``cosine``: cosine similarity. ``euclidean``: negative squared distance.
    ``linear``: ``queries @ prototypes.T + bias`` (the LDA head's form).
    """
    protos, extra = _prepare_prototypes(queries, prototypes, metric, bias)
    out = torch.empty(queries.shape[0], protos.shape[0], device=queries.device)
    for start in range(0, queries.shape[0], QUERY_BLOCK_ROWS):
        q = fp32_rows(queries, start, start + QUERY_BLOCK_ROWS, False)
        out[start : start + q.shape[0]] = _prototype_block(q, protos, metric, extra)
    return out


def prototype_predict(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Index of the best prototype per query (int64), without keeping all scores."""
    protos, extra = _prepare_prototypes(queries, prototypes, metric, bias)
    out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, queries.shape[0], QUERY_BLOCK_ROWS):
        q = fp32_rows(queries, start, start + QUERY_BLOCK_ROWS, False)
        scores = _prototype_block(q, protos, metric, extra)
        torch.argmax(scores, dim=1, out=out[start : start + q.shape[0]])
    return out


def knn_block_cols(num_queries: int, chunk: int | None = None) -> int:
    """Bank rows scored per step: a score block of about ``KNN_SCORE_BLOCK`` floats."""
    if chunk is not None:
        if chunk < 1:
            raise ConfigError(f"chunk={chunk} must be positive")
        return chunk
    return max(KNN_MIN_COLS, min(KNN_MAX_COLS, KNN_SCORE_BLOCK // max(num_queries, 1)))


def knn_search(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int = 10,
    metric: str = "cosine",
    chunk: int | None = None,
    bank_norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The min(k, bank size) nearest bank rows of each query: (scores, indices), best first.

    Scores are cosine similarities or negative squared Euclidean distances.
    The bank is scanned in blocks of ``chunk`` rows (default: sized so that a
    score block is ~16 MiB); each block's top-k is merged into a running top-k,
    so memory is O(queries x (k + chunk)) whatever the bank size.
    ``bank_norms`` (``row_norms(bank)``, kept with a bank that is searched many
    times) saves the second pass over the bank that the norms otherwise cost.
    """
    k = check_knn_inputs(queries, bank, k, metric, bank_norms)
    values, indices = [], []
    for start in range(0, queries.shape[0], QUERY_BLOCK_ROWS):
        q = fp32_rows(queries, start, start + QUERY_BLOCK_ROWS, metric == "cosine")
        cols = knn_block_cols(q.shape[0], chunk)
        v, i = _knn_query_block(q, bank, k, metric, cols, bank_norms)
        values.append(v)
        indices.append(i)
    if not values:
        empty = queries.new_empty(0, k, dtype=torch.float32)
        return empty, empty.long()
    return torch.cat(values), torch.cat(indices)


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each row, fp32, one block at a time (no full fp32 copy of half inputs)."""
    out = torch.empty(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], STATS_BLOCK_ROWS):
        rows = fp32_rows(x, start, start + STATS_BLOCK_ROWS, False)
        torch.linalg.vector_norm(rows, dim=1, out=out[start : start + rows.shape[0]])
    return out


def _knn_query_block(
    q: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    metric: str,
    cols: int,
    bank_norms: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    n = q.shape[0]
    best = torch.full((n, k), float("-inf"), device=q.device)
    best_idx = torch.zeros((n, k), dtype=torch.long, device=q.device)
    for start in range(0, bank.shape[0], cols):
        b = bank[start : start + cols].to(q.device, torch.float32)
        if bank_norms is None:
            norms = torch.linalg.vector_norm(b, dim=1)
        else:
            norms = bank_norms[start : start + b.shape[0]].to(q.device, torch.float32)
        if metric == "cosine":
            block = matmul_nt(q, b).div_(norms.clamp_min(NORM_EPS)[None, :])
        else:  # q.b - |b|^2 / 2 ranks like -|q - b|^2; the rest is applied to the top k
            block = matmul_nt(q, b, norms.square().mul_(-0.5))
        top, pos = block.topk(min(k, b.shape[0]), dim=1)
        merged, which = torch.cat([best, top], 1).topk(k, dim=1)
        candidates = torch.cat([best_idx, pos + start], 1)
        best, best_idx = merged, candidates.gather(1, which)
    if metric == "euclidean":
        best = (2.0 * best - q.pow(2).sum(1, keepdim=True)).clamp_max_(0)
    return best, best_idx
