"""Choice scoring: examples per second, batched (prompt encoded once) vs one forward per choice.

    .venv/bin/python benchmarks/choice_scoring.py [--tasks sports_understanding,navigate]
        [--examples 32] [--backbone smollm2-135m] [--batch-size 8]

Reads the BIG-bench tasks of the offline stream, scores every example's choices
both ways, checks that the two agree, and prints examples/s side by side (wall
and CPU seconds; wall times on a shared machine are inflated).
"""

from __future__ import annotations

import argparse
import time

import torch

from clbench.evaluator import cpu_seconds


def timed(fn, *args):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn(*args)
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    from clbench.backbones import build_backbone
    from clbench.runtime import configure_torch
    from clbench.scenarios.readers.bigbench import read_bigbench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="metaphor_boolean,physics")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    configure_torch()
    lm = build_backbone(args.backbone)
    print(
        f"{'task':24s} {'choices':>7s} {'batched ex/s':>13s} {'per-choice ex/s':>16s} "
        f"{'speed-up':>8s} {'CPU s (b / p)':>14s} {'max |diff|':>10s}"
    )
    for task in read_bigbench([t.strip() for t in args.tasks.split(",")]):
        examples = [e for e in task.examples if e.choices][: args.examples]
        prompts, choices = [e.prompt for e in examples], [e.choices for e in examples]
        fast, wall_b, cpu_b = timed(lm.choice_logprobs, prompts, choices, args.batch_size)
        slow, wall_p, cpu_p = timed(lm.choice_logprobs_per_choice, prompts, choices)
        diff = max(float((a - b).abs().max()) for a, b in zip(fast, slow, strict=True))
        mean_choices = sum(len(c) for c in choices) / len(choices)
        print(
            f"{task.name:24s} {mean_choices:7.1f} {len(examples) / wall_b:13.2f} "
            f"{len(examples) / wall_p:16.2f} {wall_p / wall_b:7.2f}x "
            f"{cpu_b:6.1f} / {cpu_p:5.1f} {diff:10.2e}"
        )
    print(
        f"torch threads: {torch.get_num_threads()}, {args.examples} examples per task, "
        f"batch size {args.batch_size}"
    )


if __name__ == "__main__":
    main()
