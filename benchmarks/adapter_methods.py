"""SEMA, MOS, ADAM-adapter (APER) and SimpleCIL on one scenario and backbone, side by side.

    OMP_NUM_THREADS=1 python benchmarks/adapter_methods.py [--image-size 56] [--tasks 3] [--set sema.train.epochs=5]

Every method runs with its published defaults unless ``--set METHOD.KEY=VALUE``
overrides one (``METHOD.train.KEY`` for a training option); the table shows Ā, last accuracy and PILOT forgetting
(sample-weighted), wall time, trainable parameters after the last task, SEMA's
adapters per expandable block and MOS's retrieval accuracy after the last task.
Results are stored like any run (``--results-dir``).
"""

from __future__ import annotations

import argparse
import time

from clbench.options import merge_options, parse_sets
from clbench.results import ResultsStore
from clbench.runner import RunSpec, run

METHODS = {"simplecil": {}, "aper": {"peft": "adapter"}, "sema": {}, "mos": {}}


def overrides(items: list[str]) -> dict[str, dict]:
    options: dict[str, dict] = {m: dict(o) for m, o in METHODS.items()}
    for item in items:
        method, _, rest = item.partition(".")
        options[method] = merge_options(options[method], parse_sets([rest])[0])
    return options


def describe(method: str, extra: dict) -> str:
    if method == "sema":
        return f"adapters per block {extra['adapters_per_layer'][-1]}, {len(extra['expansions'])} expansions"
    if method == "mos":
        last = extra["retrieval"][-1]
        return f"retrieval {last['retrieval_accuracy']:.3f} (first guess {last['first_guess_accuracy']:.3f})"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="emoji-cil")
    parser.add_argument("--backbone", default="dinov2-vits14")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args()
    store = ResultsStore(args.results_dir) if args.results_dir else None
    print("| method | Ā | last | forgetting | wall s | trainable params | |")
    print("|---|---|---|---|---|---|---|")
    for method, options in overrides(args.sets).items():
        spec = RunSpec(
            scenario=args.scenario,
            method=method,
            backbone=args.backbone,
            image_size=args.image_size,
            method_options=options,
            scenario_options={"num_tasks": args.tasks},
        )
        began = time.perf_counter()
        result = run(spec, store=store)
        m = result.metrics
        print(
            f"| {method} {options or ''} | {100 * m['avg_acc_sample']:.2f} | {100 * m['last_acc_sample']:.2f} | "
            f"{100 * m['forgetting_pilot']:.2f} | {time.perf_counter() - began:.0f} | "
            f"{result.trainable_parameters[-1]:,} | {describe(method, result.extra)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
