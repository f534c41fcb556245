"""clbench.kernels against the plain torch way and faiss-cpu, side by side, as ratios.

    .venv/bin/python benchmarks/kernels.py            # 10k, 100k, 1M rows x 768 (~5 min, ~10 GB peak)
    .venv/bin/python benchmarks/kernels.py --quick    # small sizes, seconds

Every ratio is (other time) / (clbench time): above 1 means clbench is faster.
Times are the best of ``--repeats`` runs (one run at the largest size), the
ways taking turns, on whatever threads torch has (set OMP_NUM_THREADS); faiss
gets the same number.
Memory peaks are measured in a fresh subprocess per measurement, as the rise of
peak RSS over the RSS after the inputs were built, so they see every allocator.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import clbench.kernels as kernels
from clbench.kernels.products import machine_key

DIMS = 768
CLASSES = 100
QUERIES = 256
K = 10


def race(ways: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time of each way, the ways taking turns so that a burst of load on a
    shared machine hits all of them rather than one."""
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def make_rows(rows: int, seed: int) -> torch.Tensor:
    """Post-ReLU-like features: non-negative, with a common mean, like a CNN's embeddings."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, DIMS, generator=g)
    return x.abs_()


# --- the plain torch ways -------------------------------------------------------


def make_labels(rows: int) -> torch.Tensor:
    return torch.randint(0, CLASSES, (rows,), generator=torch.Generator().manual_seed(1))


def plain_stats_index_add(x, y, outer):
    sums = torch.zeros(CLASSES, DIMS).index_add_(0, y, x)
    return torch.bincount(y, minlength=CLASSES), sums, (x.T @ x if outer else None)


def plain_stats_one_hot(x, y, outer):
    one_hot = F.one_hot(y, CLASSES).float()
    return one_hot.sum(0), one_hot.T @ x, (x.T @ x if outer else None)


def plain_knn(q, bank, metric):
    """What one writes without a kernel: the full score matrix, then topk."""
    if metric == "cosine":
        scores = F.normalize(q, dim=1) @ F.normalize(bank, dim=1).T
        return scores.topk(K, dim=1)
    return torch.cdist(q, bank).topk(K, dim=1, largest=False)


def faiss_index(bank, metric):
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    index = faiss.IndexFlatIP(DIMS) if metric == "cosine" else faiss.IndexFlatL2(DIMS)
    data = F.normalize(bank, dim=1) if metric == "cosine" else bank
    index.add(data.numpy())
    return index


def faiss_search(index, q, metric):
    data = F.normalize(q, dim=1) if metric == "cosine" else q
    return index.search(data.numpy(), K)


# --- sections ---------------------------------------------------------------------


def bench_sums(sizes, repeats):
    print(f"\n## Per-class counts and sums, {CLASSES} classes x {DIMS} dims, fp32\n")
    print(
        "| rows | clbench s | index_add s | one-hot matmul s | index_add / clbench | one-hot / clbench |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        x, y = make_rows(rows, 0), make_labels(rows)
        r = 1 if rows >= 1_000_000 else repeats
        t = race(
            {
                "ours": lambda x=x, y=y: kernels.class_stats(x, y, CLASSES),
                "index_add": lambda x=x, y=y: plain_stats_index_add(x, y, False),
                "one_hot": lambda x=x, y=y: plain_stats_one_hot(x, y, False),
            },
            r,
        )
        ours, index_add, one_hot = t["ours"], t["index_add"], t["one_hot"]
        print(
            f"| {rows:,} | {ours:.3f} | {index_add:.3f} | {one_hot:.3f} | "
            f"{index_add / ours:.2f} | {one_hot / ours:.2f} |",
            flush=True,
        )
        del x, y


def scatter_error(counts, sums, outer, exact) -> float:
    """Max error of the within-class scatter (what LDA inverts), relative to its largest entry."""
    counts, sums, outer = counts.double(), sums.double(), outer.double()
    within = outer - (sums.T / counts.clamp_min(1)) @ sums
    return ((within - exact).abs().max() / exact.abs().max()).item()


def bench_lda_stats(sizes, repeats):
    print(
        f"\n## Counts, sums and pooled sum of x x^T (the LDA statistics), {CLASSES} classes x {DIMS} dims\n"
    )
    print(
        "Error: max error of the within-class scatter against float64, relative to its largest entry.\n"
    )
    print(
        "| rows | clbench s | index_add + x.T @ x (fp32) s | plain / clbench | clbench error | plain fp32 error |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        x, y = make_rows(rows, 0), make_labels(rows)
        r = 1 if rows >= 1_000_000 else repeats
        t = race(
            {
                "ours": lambda x=x, y=y: kernels.class_stats(x, y, CLASSES, outer=True),
                "plain": lambda x=x, y=y: plain_stats_index_add(x, y, True),
            },
            r,
        )
        ours, plain = t["ours"], t["plain"]
        errors = ["-", "-"]
        if rows <= 100_000:
            x64 = x.double()
            sums64 = torch.zeros(CLASSES, DIMS, dtype=torch.float64).index_add_(0, y, x64)
            counts = torch.bincount(y, minlength=CLASSES)
            exact = x64.T @ x64 - (sums64.T / counts.clamp_min(1)) @ sums64
            del x64
            st = kernels.class_stats(x, y, CLASSES, outer=True)
            errors = [
                f"{scatter_error(st.counts, st.sums, st.outer, exact):.1e}",
                f"{scatter_error(*plain_stats_index_add(x, y, True), exact):.1e}",
            ]
        print(
            f"| {rows:,} | {ours:.3f} | {plain:.3f} | {plain / ours:.2f} | {errors[0]} | {errors[1]} |",
            flush=True,
        )
        del x, y


def bench_knn(sizes, repeats, queries, metric, with_faiss):
    print(f"\n## kNN, {queries} queries, k={K}, {metric}, bank x {DIMS} dims, fp32\n")
    print("clbench+norms: the same call given row_norms(bank), computed once like faiss's index.\n")
    print(
        "| bank | clbench s | clbench+norms s | plain torch s | faiss search s | faiss index build s "
        "| plain / clbench | faiss search / clbench | faiss search / clbench+norms | agree |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        bank = make_rows(rows, 2)
        q = make_rows(queries, 3)
        r = 1 if rows >= 1_000_000 else repeats
        found = kernels.knn_search(q, bank, K, metric)
        norms = kernels.row_norms(bank)
        ways = {
            "ours": lambda q=q, bank=bank: kernels.knn_search(q, bank, K, metric),
            "normed": lambda q=q, bank=bank, norms=norms: kernels.knn_search(
                q, bank, K, metric, bank_norms=norms
            ),
            "plain": lambda q=q, bank=bank: plain_knn(q, bank, metric),
        }
        build_s, agree = float("nan"), "-"
        if with_faiss:
            start = time.perf_counter()
            index = faiss_index(bank, metric)
            build_s = time.perf_counter() - start
            ways["faiss"] = lambda index=index, q=q: faiss_search(index, q, metric)
            _, ids = faiss_search(index, q, metric)
            agree = f"{(torch.from_numpy(ids) == found[1]).float().mean().item():.3f}"
        t = race(ways, r)
        ours, normed, plain = t["ours"], t["normed"], t["plain"]
        faiss_s = t.get("faiss", float("nan"))
        ways.clear()  # frees the faiss index before the next, larger bank
        print(
            f"| {rows:,} | {ours:.3f} | {normed:.3f} | {plain:.3f} | {faiss_s:.3f} | {build_s:.3f} | "
            f"{plain / ours:.2f} | {faiss_s / ours:.2f} | {faiss_s / normed:.2f} | {agree} |",
            flush=True,
        )
        del bank


# --- memory (one subprocess per measurement) ----------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(way: str, rows: int, queries: int) -> None:
    bank, q = make_rows(rows, 2), make_rows(queries, 3)
    kernels.knn_search(q[:1], bank[:1000], K)  # loads the libraries before the baseline
    plain_knn(q[:1], bank[:1000], "cosine")
    before = peak_rss_mb()
    if way == "clbench":
        kernels.knn_search(q, bank, K, "cosine")
    elif way == "plain":
        plain_knn(q, bank, "cosine")
    else:
        plain_knn(q, bank, "euclidean")
    print(json.dumps({"extra_mb": peak_rss_mb() - before}))


def measure_memory(way: str, rows: int, queries: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", way, str(rows), str(queries)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mb"]


def bench_memory(sizes, queries):
    print(f"\n## kNN peak memory above the inputs, {queries} queries, k={K} (MB)\n")
    bank_mb = {rows: rows * DIMS * 4 / 2**20 for rows in sizes}
    print(
        "| bank | bank itself MB | clbench streaming MB | matmul + topk (cosine) MB | cdist + topk MB |"
    )
    print("|---:|---:|---:|---:|---:|")
    for rows in sizes:
        cells = [
            f"{measure_memory(way, rows, queries):.0f}" for way in ("clbench", "plain", "cdist")
        ]
        print(f"| {rows:,} | {bank_mb[rows]:.0f} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (10k, 50k rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-faiss", action="store_true", help="skip faiss-cpu")
    parser.add_argument("--only", choices=["stats", "knn", "memory"], help="run one section")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        way, rows, queries = args.memory_child
        memory_child(way, int(rows), int(queries))
        return
    sizes = [10_000, 50_000] if args.quick else [10_000, 100_000, 1_000_000]
    print(
        f"# clbench.kernels benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CUDA {'available' if torch.cuda.is_available() else 'not available (CPU only)'}"
    )
    # The product's speed (hence every ratio) depends on the vector unit: say which.
    print(f"# CPU: {machine_key()}, torch capability {torch.backends.cpu.get_cpu_capability()}")
    if args.only in (None, "memory"):
        bench_memory(sizes, QUERIES)
    if args.only in (None, "stats"):
        bench_sums(sizes, args.repeats)
        bench_lda_stats(sizes, args.repeats)
    if args.only in (None, "knn"):
        for metric in ("cosine", "euclidean"):
            bench_knn(sizes, args.repeats, QUERIES, metric, not args.no_faiss)
        bench_knn(sizes, args.repeats, 1, "cosine", not args.no_faiss)


if __name__ == "__main__":
    main()
