"""The offline instruction preset's selection test: zero-shot scores on each task's *training* pool.

    .venv/bin/python benchmarks/instruct_preset.py [--tasks movie_recommendation,physics,...]
        [--examples 100] [--pool train] [--backbone smollm2-135m] [--batch-size 8]

For every BIG-bench task named, takes the first ``--examples`` of the pool that
``bigbench-instruct`` trains on (the same seed-1993 split; the whole pool when
it is smaller), scores the backbone zero-shot with the learners' own
prediction path and the task's scorer, and prints the score with its Wilson
95% interval beside the baseline: the better of chance (the mean of
1/choices) and always giving the pool's most frequent correct answer (its
label prior: metaphor_boolean is 60% "True"). A task passes the preset's
criterion when the interval lies above that baseline and the score is at most
90%. ``top`` is the share of the model's most frequent answer: near 100% means
it answers the same whatever the question.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

from clbench.evaluator import cpu_seconds
from clbench.scenarios.instructions import BIGBENCH_HELDOUT, BIGBENCH_STREAM

DEFAULT_TASKS = ",".join(BIGBENCH_STREAM + BIGBENCH_HELDOUT)
SATURATED = 0.9


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for z = 1.96)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def chance(task, examples) -> float:
    """The better of uniform guessing and always giving the most frequent correct answer."""
    prior = Counter(e.answers[0] for e in examples).most_common(1)[0][1] / len(examples)
    if task.scorer == "multiple-choice":
        return max(prior, sum(1 / len(e.choices) for e in examples) / len(examples))
    return prior


def top_answer_share(outputs: list, examples) -> float:
    """How often the model gives its most frequent answer (choice text or generated text)."""
    if examples[0].choices is not None:
        pairs = zip(outputs, examples, strict=True)
        outputs = [e.choices[max(range(len(o)), key=o.__getitem__)] for o, e in pairs]
    return Counter(outputs).most_common(1)[0][1] / len(outputs)


def verdict(score: float, low: float, high: float, base: float) -> str:
    if score > SATURATED:
        return "fails: above 90%"
    if low > base:
        return "passes"
    if high < base:
        return "fails: below chance"
    return "fails: at chance"


def main() -> None:
    from clbench.backbones import build_backbone
    from clbench.methods.lm_common import lm_outputs
    from clbench.runtime import configure_torch
    from clbench.scenarios.instructions import TEST_POOL, split_examples, to_samples
    from clbench.scenarios.readers.bigbench import read_bigbench
    from clbench.scoring import get_scorer, score_outputs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--pool", choices=("train", "test"), default="train")
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1993)
    args = parser.parse_args()
    configure_torch()
    lm = build_backbone(args.backbone)
    print(
        f"{'task':22s} {'scorer':15s} {'pool':>5s} {'n':>4s} {'zero-shot':>9s} "
        f"{'95% interval':>15s} {'base':>7s} {'top':>5s}  {'criterion':20s} {'CPU s':>6s} "
        f"{'wall s':>6s}"
    )
    for task in read_bigbench([t.strip() for t in args.tasks.split(",") if t.strip()]):
        train, test = split_examples(task.examples, args.seed, args.examples, TEST_POOL, task.name)
        examples = train if args.pool == "train" else test[: args.examples]
        pool = len(task.examples) - min(TEST_POOL, len(task.examples) // 2)
        samples = to_samples(task, examples, args.pool)
        wall, cpu = time.perf_counter(), cpu_seconds()
        outputs = lm_outputs(lm, samples.inputs(get_scorer(task.scorer).output), args.batch_size)
        scores = score_outputs(task.scorer, outputs, samples)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        n, score, base = len(scores), float(scores.mean()), chance(task, examples)
        low, high = wilson(float(scores.sum()), n)
        top = top_answer_share(outputs, examples)
        print(
            f"{task.name:22s} {task.scorer:15s} {pool if args.pool == 'train' else TEST_POOL:5d} "
            f"{n:4d} {100 * score:8.1f}% {100 * low:6.1f}-{100 * high:5.1f}% {100 * base:6.1f}% "
            f"{100 * top:4.0f}%  "
            f"{verdict(score, low, high, base):20s} {cpu:6.1f} {wall:6.1f}",
            flush=True,
        )
    print(f"backbone {lm.name} ({lm.revision}); seed {args.seed}; batch size {args.batch_size}")


if __name__ == "__main__":
    main()
