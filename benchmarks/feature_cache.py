"""Cold vs warm (cached) vs the reference toolboxes' way, on one scenario, side by side.

    python benchmarks/feature_cache.py [--scenario emoji-cil] [--method simplecil]

- cold: an empty feature cache; every image is embedded exactly once.
- warm: the same run again; every embedding comes from the on-disk cache.
- reference: what PILOT/PyCIL do: no cache, so each task's training images are
  embedded when learned and every seen task's test images are embedded again
  after every task.
All three produce the same accuracy matrix (checked), so the ratios compare cost only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from clbench.features import FeatureCache, embed_samples
from clbench.runner import RunSpec, run


class ReextractingCache(FeatureCache):
    """The reference way: embeds whatever is asked, every time (nothing is kept)."""

    def get(self, model, extractor_id, samples, transform, device, batch_size=64, persist=True):
        start = time.perf_counter()
        out = embed_samples(model, samples, transform, device, batch_size)
        self.stats.extract_seconds += time.perf_counter() - start
        self.stats.extracted += len(samples)
        return out


def timed(spec: RunSpec, cache: FeatureCache):
    start = time.perf_counter()
    result = run(spec, cache=cache)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="emoji-cil")
    parser.add_argument("--method", default="simplecil")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    args = parser.parse_args()
    os.environ.setdefault("CLBENCH_PROGRESS", "0")
    spec = RunSpec(scenario=args.scenario, method=args.method, backbone=args.backbone)
    run(
        RunSpec(
            scenario=args.scenario,
            method=args.method,
            backbone=args.backbone,
            scenario_options={"num_tasks": 1},
        ),
        cache=FeatureCache(None),
    )  # warm up: assets, threads

    with tempfile.TemporaryDirectory() as tmp:
        reference_s, reference = timed(spec, ReextractingCache(None))
        cold_s, cold = timed(spec, FeatureCache(Path(tmp)))
        warm_s, warm = timed(spec, FeatureCache(Path(tmp)))
    same = reference.correct_matrix == cold.correct_matrix == warm.correct_matrix
    rows = [
        ("reference (re-extract)", reference_s, reference),
        ("clbench cold", cold_s, cold),
        ("clbench warm", warm_s, warm),
    ]
    print(
        f"{args.method} on {args.scenario} ({len(cold.test_counts)} tasks), {args.backbone}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"{'run':<24}{'wall s':>9}{'images embedded':>17}{'embed s':>9}")
    for name, seconds, result in rows:
        t = result.timings
        print(
            f"{name:<24}{seconds:>9.2f}{t['features_extracted']:>17}{t['feature_extraction_seconds']:>9.2f}"
        )
    print(f"cold vs reference: {reference_s / cold_s:.2f}x faster (goal >= 1.5x)")
    print(f"warm vs cold:      {cold_s / warm_s:.1f}x faster (goal >= 20x)")
    print(f"identical accuracy matrices: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
