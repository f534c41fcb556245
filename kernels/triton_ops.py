"""Triton kernels for CUDA tensors, with the signatures of ``torch_ops``.

Imported only when Triton is installed and a CUDA tensor (or, for tests, the
interpreter: ``TRITON_INTERPRET=1``) asks for it. Every kernel reads its inputs
through their strides (no contiguous copies), widens fp16/bf16 to fp32 in
registers and accumulates in fp32; the host adds launch results in float64.

- ``_class_sums_kernel``: per-class sums by atomic adds, row L2 norm and the
  centring shift applied in the load.
- ``_gram_kernel``: the pooled sum of x x^T over upper-triangle tiles only.
- ``_score_tile``: one (queries x prototypes) tile of dot products plus the
  squared norms of both sides, gathered in the same K loop (cosine and
  Euclidean need no normalised copies); used by scores, argmax and kNN.
- ``_knn_kernel``: streams bank tiles, keeps a running top-k per query as
  packed (score, index) int64 keys, so ties go to the lower bank index; each
  program covers a slice of the bank and the host merges split x k candidates.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from clbench.kernels import torch_ops
from clbench.kernels.common import (
    ClassStats,
    check_knn_inputs,
    check_prototype_inputs,
    check_stats_inputs,
)

# The interpreter gets wrong answers from bf16 dot products and arithmetic
# (ASSETS.md), so there bf16 is widened to fp32 before the dot like fp32 is.
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
METRIC_IDS = {"cosine": 0, "euclidean": 1, "linear": 2}
# fp32 atomics sum at most this many rows before the float64 flush.
STATS_LAUNCH_ROWS = 65536
# Smaller than every real packed key: the empty slots of a running top-k.
EMPTY_KEY = -(2**63) + 1


def _tiles(device: torch.device) -> dict[str, int]:
    if device.type == "cuda":
        return {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}
    return {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}  # the interpreter: small is fast


def _native_dot(*tensors: torch.Tensor) -> bool:
    """Dot fp16/bf16 tiles as they are (fp32 accumulation) when all inputs share that dtype."""
    dtype = tensors[0].dtype
    if any(t.dtype != dtype for t in tensors) or dtype not in (torch.float16, torch.bfloat16):
        return False
    return not (INTERPRETING and dtype == torch.bfloat16)


# --- statistics -------------------------------------------------------------------


@triton.jit
def _class_sums_kernel(
    x_ptr,
    y_ptr,
    shift_ptr,
    sums_ptr,
    inv_ptr,
    n,
    d,
    sxn,
    sxd,
    NORMALIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    labels = tl.load(y_ptr + rows, mask=row_ok, other=0)
    rows64 = rows.to(tl.int64)  # row offsets pass 2**31 elements on large inputs
    inv = tl.full([BLOCK_N], 1.0, tl.float32)
    if NORMALIZE:
        squares = tl.zeros([BLOCK_N], tl.float32)
        for d0 in range(0, d, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            mask = row_ok[:, None] & (cols < d)[None, :]
            v = tl.load(x_ptr + rows64[:, None] * sxn + cols[None, :] * sxd, mask=mask, other=0.0)
            v = v.to(tl.float32)
            squares += tl.sum(v * v, axis=1)
        inv = 1.0 / tl.maximum(tl.sqrt(squares), 1e-12)
    if tl.program_id(1) == 0:
        tl.store(inv_ptr + rows, inv, mask=row_ok)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < d
    mask = row_ok[:, None] & col_ok[None, :]
    v = tl.load(x_ptr + rows64[:, None] * sxn + cols[None, :] * sxd, mask=mask, other=0.0)
    shift = tl.load(shift_ptr + cols, mask=col_ok, other=0.0)
    v = v.to(tl.float32) * inv[:, None] - shift[None, :]
    tl.atomic_add(sums_ptr + labels[:, None] * d + cols[None, :], v, mask=mask)


@triton.jit
def _gram_kernel(
    x_ptr, inv_ptr, shift_ptr, out_ptr, n, d, sxn, sxd, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr
):
    """out[i-tile, j-tile] = sum over rows of c_i c_j, c = x * inv - shift; j >= i only."""
    ti, tj = tl.program_id(0), tl.program_id(1)
    if tj >= ti:
        ci = ti * BLOCK_D + tl.arange(0, BLOCK_D)
        cj = tj * BLOCK_D + tl.arange(0, BLOCK_D)
        shift_i = tl.load(shift_ptr + ci, mask=ci < d, other=0.0)
        shift_j = tl.load(shift_ptr + cj, mask=cj < d, other=0.0)
        acc = tl.zeros([BLOCK_D, BLOCK_D], tl.float32)
        for r0 in range(0, n, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            row_ok = rows < n
            inv = tl.load(inv_ptr + rows, mask=row_ok, other=0.0)
            mask_i = row_ok[:, None] & (ci < d)[None, :]
            mask_j = row_ok[:, None] & (cj < d)[None, :]
            rows64 = rows.to(tl.int64)
            a = tl.load(x_ptr + rows64[:, None] * sxn + ci[None, :] * sxd, mask=mask_i, other=0.0)
            b = tl.load(x_ptr + rows64[:, None] * sxn + cj[None, :] * sxd, mask=mask_j, other=0.0)
            a = tl.where(mask_i, a.to(tl.float32) * inv[:, None] - shift_i[None, :], 0.0)
            b = tl.where(mask_j, b.to(tl.float32) * inv[:, None] - shift_j[None, :], 0.0)
            acc = tl.dot(tl.trans(a), b, acc, input_precision="ieee")
        out = out_ptr + ci[:, None] * d + cj[None, :]
        tl.store(out, acc, mask=(ci < d)[:, None] & (cj < d)[None, :])


def class_stats(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    normalize: bool = False,
    outer: bool = False,
    stats: ClassStats | None = None,
) -> ClassStats:
    labels = check_stats_inputs(features, labels, num_classes, stats).contiguous()
    rows, dims = features.shape
    dev = features.device
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    sums = torch.zeros(num_classes, dims, dtype=torch.float64, device=dev)
    scatter = torch.zeros(dims, dims, dtype=torch.float64, device=dev) if outer else None
    shift = torch.zeros(dims, device=dev)
    if outer and rows:  # any shift is exact; the mean of a few rows removes the common mean
        shift = torch_ops.fp32_rows(features, 0, 1024, normalize).mean(0)
    tile = _tiles(dev)
    for start in range(0, rows, STATS_LAUNCH_ROWS):
        x = features[start : start + STATS_LAUNCH_ROWS]
        y = labels[start : start + STATS_LAUNCH_ROWS]
        n = x.shape[0]
        partial = torch.zeros(num_classes, dims, device=dev)
        inv = torch.empty(n, device=dev)
        grid = (triton.cdiv(n, tile["BLOCK_M"]), triton.cdiv(dims, tile["BLOCK_N"]))
        _class_sums_kernel[grid](
            x,
            y,
            shift,
            partial,
            inv,
            n,
            dims,
            x.stride(0),
            x.stride(1),
            NORMALIZE=normalize,
            BLOCK_N=tile["BLOCK_M"],
            BLOCK_D=tile["BLOCK_N"],
        )
        sums += partial
        if scatter is None:
            continue
        shift64 = shift.double()
        sums.addr_(torch.bincount(y, minlength=num_classes).double(), shift64)
        gram = torch.zeros(dims, dims, device=dev)
        grid = (triton.cdiv(dims, tile["BLOCK_N"]),) * 2
        _gram_kernel[grid](
            x,
            inv,
            shift,
            gram,
            n,
            dims,
            x.stride(0),
            x.stride(1),
            BLOCK_D=tile["BLOCK_N"],
            BLOCK_R=tile["BLOCK_K"],
        )
        scatter += gram.triu() + gram.triu(1).T
        drift = partial.sum(0, dtype=torch.float64)
        scatter.addr_(shift64, drift).addr_(drift, shift64).addr_(shift64, shift64, alpha=n)
    result = ClassStats(counts, sums, scatter)
    return result if stats is None else stats.merge(result)


# --- scores against prototypes ------------------------------------------------------


@triton.jit
def _score_tile(
    q_ptr,
    p_ptr,
    bias_ptr,
    rows,
    cols,
    n,
    c,
    d,
    sqn,
    sqd,
    spn,
    spd,
    METRIC: tl.constexpr,
    NATIVE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Scores of query rows x prototype cols; invalid rows/cols hold garbage, mask them."""
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    q_sq = tl.zeros([BLOCK_M], tl.float32)
    p_sq = tl.zeros([BLOCK_N], tl.float32)
    rows64 = rows.to(tl.int64)  # a 1M x 768 bank already passes 2**29 elements
    cols64 = cols.to(tl.int64)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            q_ptr + rows64[:, None] * sqn + ks[None, :] * sqd,
            mask=(rows < n)[:, None] & (ks < d)[None, :],
            other=0.0,
        )
        b = tl.load(
            p_ptr + cols64[:, None] * spn + ks[None, :] * spd,
            mask=(cols < c)[:, None] & (ks < d)[None, :],
            other=0.0,
        )
        a32 = a.to(tl.float32)
        b32 = b.to(tl.float32)
        if METRIC != 2:
            q_sq += tl.sum(a32 * a32, axis=1)
            p_sq += tl.sum(b32 * b32, axis=1)
        if NATIVE:
            acc = tl.dot(a, tl.trans(b), acc)
        else:
            acc = tl.dot(a32, tl.trans(b32), acc, input_precision="ieee")
    if METRIC == 0:
        q_norm = tl.maximum(tl.sqrt(q_sq), 1e-12)
        p_norm = tl.maximum(tl.sqrt(p_sq), 1e-12)
        acc = acc / q_norm[:, None] / p_norm[None, :]
    elif METRIC == 1:
        acc = 2.0 * acc - q_sq[:, None] - p_sq[None, :]
    else:
        acc += tl.load(bias_ptr + cols, mask=cols < c, other=0.0)[None, :]
    return acc


@triton.jit
def _scores_kernel(
    q_ptr,
    p_ptr,
    bias_ptr,
    out_ptr,
    n,
    c,
    d,
    sqn,
    sqd,
    spn,
    spd,
    son,
    METRIC: tl.constexpr,
    NATIVE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    s = _score_tile(
        q_ptr,
        p_ptr,
        bias_ptr,
        rows,
        cols,
        n,
        c,
        d,
        sqn,
        sqd,
        spn,
        spd,
        METRIC,
        NATIVE,
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
    )
    tl.store(
        out_ptr + rows.to(tl.int64)[:, None] * son + cols[None, :],
        s,
        mask=(rows < n)[:, None] & (cols < c)[None, :],
    )


@triton.jit
def _argmax_kernel(
    q_ptr,
    p_ptr,
    bias_ptr,
    out_ptr,
    n,
    c,
    d,
    sqn,
    sqd,
    spn,
    spd,
    METRIC: tl.constexpr,
    NATIVE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    best = tl.full([BLOCK_M], float("-inf"), tl.float32)
    best_col = tl.zeros([BLOCK_M], tl.int64)
    for c0 in range(0, c, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        s = _score_tile(
            q_ptr,
            p_ptr,
            bias_ptr,
            rows,
            cols,
            n,
            c,
            d,
            sqn,
            sqd,
            spn,
            spd,
            METRIC,
            NATIVE,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
        )
        s = tl.where((cols < c)[None, :], s, float("-inf"))
        tile_best = tl.max(s, axis=1)
        tile_col = c0 + tl.argmax(s, axis=1, tie_break_left=True).to(tl.int64)
        better = tile_best > best  # strict: the first best column wins, as torch.argmax
        best_col = tl.where(better, tile_col, best_col)
        best = tl.where(better, tile_best, best)
    tl.store(out_ptr + rows, best_col, mask=rows < n)


def _prototype_args(queries, prototypes, metric, bias):
    check_prototype_inputs(queries, prototypes, metric, bias)
    prototypes = prototypes.to(queries.device)
    bias = bias if bias is not None else torch.zeros(prototypes.shape[0])
    bias = bias.to(queries.device, torch.float32).contiguous()
    return prototypes, bias


def prototype_scores(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    prototypes, bias = _prototype_args(queries, prototypes, metric, bias)
    n, c = queries.shape[0], prototypes.shape[0]
    out = torch.empty(n, c, device=queries.device)
    tile = _tiles(queries.device)
    grid = (triton.cdiv(n, tile["BLOCK_M"]), triton.cdiv(c, tile["BLOCK_N"]))
    if n:
        _scores_kernel[grid](
            queries,
            prototypes,
            bias,
            out,
            n,
            c,
            queries.shape[1],
            *queries.stride(),
            *prototypes.stride(),
            out.stride(0),
            METRIC=METRIC_IDS[metric],
            NATIVE=_native_dot(queries, prototypes),
            **tile,
        )
    return out


def prototype_predict(
    queries: torch.Tensor,
    prototypes: torch.Tensor,
    metric: str = "cosine",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    prototypes, bias = _prototype_args(queries, prototypes, metric, bias)
    n, c = queries.shape[0], prototypes.shape[0]
    out = torch.empty(n, dtype=torch.long, device=queries.device)
    tile = _tiles(queries.device)
    if n:
        _argmax_kernel[(triton.cdiv(n, tile["BLOCK_M"]),)](
            queries,
            prototypes,
            bias,
            out,
            n,
            c,
            queries.shape[1],
            *queries.stride(),
            *prototypes.stride(),
            METRIC=METRIC_IDS[metric],
            NATIVE=_native_dot(queries, prototypes),
            **tile,
        )
    return out


# --- kNN ------------------------------------------------------------------------------


@triton.jit
def _knn_kernel(
    q_ptr,
    b_ptr,
    keys_ptr,
    n,
    m,
    d,
    sqn,
    sqd,
    sbn,
    sbd,
    splits,
    METRIC: tl.constexpr,
    NATIVE: tl.constexpr,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    split = tl.program_id(1)
    best = tl.full([BLOCK_M, K], -9223372036854775807, tl.int64)
    for tile in range(split, tl.cdiv(m, BLOCK_N), splits):
        cols = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        s = _score_tile(
            q_ptr,
            b_ptr,
            q_ptr,
            rows,
            cols,
            n,
            m,
            d,
            sqn,
            sqd,
            sbn,
            sbd,
            METRIC,
            NATIVE,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
        )
        s = tl.where((cols < m)[None, :], s, float("-inf"))
        # order-preserving int32 image of the float, then the index, lower index first
        bits = s.to(tl.int32, bitcast=True)
        ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
        keys = (ordered.to(tl.int64) << 32) | (0x7FFFFFFF - cols).to(tl.int64)[None, :]
        top = tl.topk(keys, K, dim=1)
        best = tl.topk(tl.reshape(tl.join(best, top), [BLOCK_M, 2 * K]), K, dim=1)
    out = keys_ptr + (rows.to(tl.int64)[:, None] * splits + split) * K + tl.arange(0, K)[None, :]
    tl.store(out, best, mask=(rows < n)[:, None])


def _unpack(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ordered = (keys >> 32).to(torch.int32)
    bits = ordered ^ ((ordered >> 31) & 0x7FFFFFFF)
    return bits.view(torch.float32), 0x7FFFFFFF - (keys & 0xFFFFFFFF)


def _splits(device: torch.device, query_blocks: int, bank_tiles: int) -> int:
    """Bank slices per query block: enough programs to fill the GPU, no more."""
    programs = (
        4 * torch.cuda.get_device_properties(device).multi_processor_count
        if device.type == "cuda"
        else 4
    )
    return max(1, min(bank_tiles, programs // max(query_blocks, 1)))


def knn_search(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int = 10,
    metric: str = "cosine",
    chunk: int | None = None,
    bank_norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``chunk`` and ``bank_norms`` are accepted for the shared signature but not
    needed: tiles are fixed per device and norms are summed in the same load."""
    k = check_knn_inputs(queries, bank, k, metric, bank_norms)
    bank = bank.to(queries.device)
    n, m = queries.shape[0], bank.shape[0]
    tile = dict(_tiles(queries.device))
    k_slots = triton.next_power_of_2(k)
    tile["BLOCK_N"] = max(tile["BLOCK_N"], k_slots)  # tl.topk needs a tile of at least K
    query_blocks = triton.cdiv(n, tile["BLOCK_M"])
    splits = _splits(queries.device, query_blocks, triton.cdiv(m, tile["BLOCK_N"]))
    keys = torch.empty(n, splits, k_slots, dtype=torch.long, device=queries.device)
    if n:
        _knn_kernel[(query_blocks, splits)](
            queries,
            bank,
            keys,
            n,
            m,
            queries.shape[1],
            *queries.stride(),
            *bank.stride(),
            splits,
            METRIC=METRIC_IDS[metric],
            NATIVE=_native_dot(queries, bank),
            K=k_slots,
            **tile,
        )
    best = keys.view(n, splits * k_slots).topk(k, dim=1).values
    values, indices = _unpack(best)
    if metric == "euclidean":
        values = values.clamp_max(0)
    return values, indices


__all__ = ["class_stats", "knn_search", "prototype_predict", "prototype_scores"]
