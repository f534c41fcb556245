"""The one matrix product behind CPU scoring and kNN, on the fastest library here.

``a @ b.T (+ bias)`` is most of the time of prototype scoring and of every
kNN block, and on CPUs the three libraries torch ships or sits beside differ
by up to 2.5x on the same shape: measured on this project's 2-vCPU AMD EPYC
(AVX-512), one thread, 256 x 16384 x 768 fp32, torch's ``mm`` (MKL, which
takes a generic path on non-Intel CPUs) 81 GFLOP/s, numpy's OpenBLAS 100,
oneDNN (``torch.ops.mkldnn._linear_pointwise`` on plain dense tensors, no
layout conversion) 202; with one query row, a memory-bound product, numpy led.
No single library wins every shape on every CPU, so the choice is measured:

- ``CLBENCH_MATMUL=torch|numpy|onednn`` forces one library;
- otherwise (``auto``) each shape class (rows of ``a`` x columns of the
  result, bucketed) gets the library that was fastest on a representative
  product of that class, timed once per machine, thread count and library
  versions, and stored in ``<cache>/kernels/matmul-calibration.json`` (with
  the timings, so a choice can be inspected). Delete the file to re-measure.

Every library computes the same fp32 product; results differ only by
summation order (tested within 1e-4 relative). Tensors that are not fp32 on
the CPU always take torch (float64 is the exact-statistics request).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import torch

from clbench.errors import ConfigError

LIBRARIES = ("torch", "numpy", "onednn")
CALIBRATION_FORMAT = 2  # 2: a product is timed with the torch op after it (``_next_op``)
# Shape classes: rows of ``a`` (queries) and columns of the result (bank rows or classes).
ROW_EDGES = (1, 8, 64, 512)
COL_EDGES = (2048,)
# Representative shapes timed per class: the row counts below, against 1,000 columns
# (prototypes of a 1,000-class head) and against the kNN's own bank block for that
# many queries; 768 deep. Calibrating all eight takes 2-4 s on one core.
_SAMPLE_ROWS = {0: 1, 1: 16, 2: 256, 3: 2048}
_SAMPLE_DEPTH = 768
_REPEATS = 5


def _sample_cols(rows: int, col_class: int) -> int:
    from clbench.kernels.torch_ops import knn_block_cols  # the kNN's block width

    return 1000 if col_class == 0 else knn_block_cols(rows)


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def available_libraries() -> tuple[str, ...]:
    """The libraries this installation can run (torch and numpy always)."""
    return tuple(lib for lib in LIBRARIES if lib != "onednn" or _onednn_available())


@cache
def _numpy_threads(threads: int) -> None:
    """Give numpy's BLAS the same thread count as torch (it keeps its own pool)."""
    with contextlib.suppress(Exception):  # no threadpoolctl, or an unknown BLAS: its default
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


def _product(library: str, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None):
    if library == "onednn":
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    if library == "numpy":
        _numpy_threads(torch.get_num_threads())
        out = torch.from_numpy(a.numpy() @ b.numpy().T)
    else:
        return torch.mm(a, b.T) if bias is None else torch.addmm(bias, a, b.T)
    return out if bias is None else out.add_(bias)


def shape_class(rows: int, cols: int) -> str:
    """The calibration bucket of an (rows x cols) result."""
    r = sum(rows >= edge for edge in ROW_EDGES[1:])
    c = sum(cols >= edge for edge in COL_EDGES)
    return f"r{r}c{c}"


def machine_key() -> str:
    """What a calibration is valid for: CPU, threads and the libraries' versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((ln.split(":", 1)[1].strip() for ln in handle if "model name" in ln), cpu)
    return (
        f"{cpu}|{os.cpu_count()} cpus|{torch.get_num_threads()} threads|torch {torch.__version__}"
        f"|numpy {np.__version__}"
    )


_NEXT = torch.ones(128, 128)


def _next_op() -> None:
    """A small multi-threaded torch op, as follows every product in use (a top-k, a sum)."""
    torch.mm(_NEXT, _NEXT)


def _time(library: str, a: torch.Tensor, b: torch.Tensor, repeats: int = _REPEATS) -> float:
    """Best time of the product and the torch op after it: OpenBLAS's threads spin for a
    while after a product and slow the next multi-threaded torch op (a 0.2 ms product took
    15 ms here), a cost that belongs to the library that left them spinning."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _product(library, a, b, None)
        _next_op()
        best = min(best, time.perf_counter() - start)
    return best


def calibrate() -> dict[str, dict]:
    """Time every library on each shape class's representative product (turn by turn,
    so a burst of load hits all of them); returns {class: {"library", "seconds"}}."""
    g = torch.Generator().manual_seed(0)
    table: dict[str, dict] = {}
    for r, rows in _SAMPLE_ROWS.items():
        for c in range(len(COL_EDGES) + 1):
            cols = _sample_cols(rows, c)
            a = torch.randn(rows, _SAMPLE_DEPTH, generator=g)
            b = torch.randn(cols, _SAMPLE_DEPTH, generator=g)
            libs = available_libraries()
            for lib in libs:  # warm-up: first calls load code and allocate
                _product(lib, a, b, None)
            seconds = {lib: _time(lib, a, b) for lib in libs}
            table[f"r{r}c{c}"] = {"library": min(seconds, key=seconds.get), "seconds": seconds}
    return table


def calibration_file() -> Path:
    from clbench.paths import cache_root

    return cache_root() / "kernels" / "matmul-calibration.json"


@cache
def _calibration(key: str) -> dict[str, dict]:
    path = calibration_file()
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads(path.read_text())
        if stored.get("format") == CALIBRATION_FORMAT and key in stored.get("machines", {}):
            return stored["machines"][key]
    table = calibrate()
    try:  # the timings are a cache: failing to store them costs a re-measure, nothing else
        stored = {"format": CALIBRATION_FORMAT, "machines": {}}
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(path.read_text())
            if previous.get("format") == CALIBRATION_FORMAT:
                stored = previous
        stored["machines"][key] = table
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        print(f"clbench: warning: could not store {path}: {exc}", file=sys.stderr)
    return table


def library_for(rows: int, cols: int) -> str:
    """The library ``matmul_nt`` uses for an fp32 CPU product with this result shape."""
    choice = os.environ.get("CLBENCH_MATMUL", "auto")
    if choice != "auto":
        if choice not in LIBRARIES:
            raise ConfigError(
                f"CLBENCH_MATMUL={choice!r} is not a matrix-product library",
                f"use auto or one of {', '.join(LIBRARIES)}",
            )
        if choice not in available_libraries():
            raise ConfigError(
                f"CLBENCH_MATMUL={choice} is not available in this torch build",
                "use auto, torch or numpy",
            )
        return choice
    entry = _calibration(machine_key()).get(shape_class(rows, cols))
    library = entry["library"] if entry else "torch"
    return library if library in available_libraries() else "torch"


def matmul_nt(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, *, numpy: bool = True
) -> torch.Tensor:
    """``a @ b.T (+ bias)`` as a new fp32 tensor, on the library measured fastest for its
    shape (``library_for``); ``bias`` has one entry per row of ``b``.

    ``numpy=False`` takes torch where numpy would be chosen: OpenBLAS's threads spin
    for a while after each product, and a torch op right after one ran 15 ms instead
    of 0.2 ms here, so code that interleaves many small products with other torch
    ops (a language model's layers) must not hop to numpy."""
    if a.device.type != "cpu" or a.dtype != torch.float32 or b.dtype != torch.float32:
        return torch.mm(a, b.T) if bias is None else torch.addmm(bias, a, b.T)
    library = library_for(a.shape[0], b.shape[0])
    if library == "numpy" and not numpy:
        library = "torch"
    if library != "torch":
        a, b = a.contiguous(), b.contiguous()  # both libraries read dense row-major operands
        bias = None if bias is None else bias.contiguous()
    return _product(library, a, b, bias)
