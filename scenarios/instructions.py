"""Lifelong instruction tuning: a stream of instruction tasks for a causal language model.

Every task is one instruction task (its own prefix is the instruction); the
learner is tuned on one after another and, after each, tested on every task
of the stream and on held-out tasks it never trains on, whose change from
before the first task to after the last is the general-ability retention.

``bigbench-instruct`` is the offline preset (BIG-bench JSON tasks from the
``bigbench`` sdist, see ``scenarios/readers/bigbench.py``); ``trace``,
``olora-benchmark`` and ``superni`` read users' copies of those benchmarks.

Split: per task, a permutation seeded by ``seed`` (1993) fixes the order of
the examples once; the first ``TEST_POOL`` of it are the test pool, the rest
the training pool, and ``test_per_task`` / ``train_per_task`` take prefixes of
each pool. So a smaller run tests on a subset of a larger run's test set and
never on its training data. Sources with their own train/test files keep them.

``evaluate_on="validation"`` tests on the last ``test_per_task`` examples of the
training pool instead (disjoint from the ``train_per_task`` trained on, which stay
the same examples): for choosing hyper-parameters without reading the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clbench.data import Samples
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, Task
from clbench.scenarios.readers.bigbench import read_bigbench
from clbench.scenarios.readers.instruction_benchmarks import (
    read_olora,
    read_superni,
    read_trace,
)
from clbench.scenarios.readers.text import MULTIPLE_CHOICE, TextExample, TextTask

#: The preset stream, in this order; chosen by the criteria in the README (section
#: "Lifelong instruction tuning"), where SmolLM2-135M's measured zero-shot scores are:
#: of the eligible multiple-choice tasks whose answers depend on the question (the
#: model's most frequent answer under half the pool), the three furthest above chance.
BIGBENCH_STREAM = ("movie_recommendation", "physics", "ruin_names")
#: Never trained on: measure how much general ability survives the stream (the other
#: two tasks of that rule).
BIGBENCH_HELDOUT = ("disambiguation_qa", "social_iqa")
TEST_POOL = 100
DEFAULT_LM = "smollm2-135m"


EVALUATE_ON = ("test", "validation")


def carve_validation(
    pool: np.ndarray, train_size: int, size: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training pool left): the validation part is the pool's tail, so the
    training prefix is the one a test run trains on."""
    if train_size + size > len(pool):
        raise ConfigError(
            f"task {name!r}: {train_size} training + {size} validation examples exceed its "
            f"training pool of {len(pool)}",
            "lower scenario.train_per_task or scenario.test_per_task",
        )
    return pool[len(pool) - size :], pool[: len(pool) - size]


def split_examples(
    examples: list[TextExample],
    seed: int,
    train_size: int,
    test_size: int,
    name: str,
    evaluate_on: str = "test",
) -> tuple[list[TextExample], list[TextExample]]:
    """The fixed split of the module docstring: (train, test or validation) prefixes."""
    if evaluate_on == "test" and test_size > TEST_POOL:
        raise ConfigError(
            f"test_per_task={test_size} exceeds the fixed test pool of {TEST_POOL} examples",
            f"use test_per_task <= {TEST_POOL}",
        )
    order = np.random.RandomState(seed).permutation(len(examples))
    pool = min(TEST_POOL, len(examples) // 2)
    test, train = order[:pool], order[pool:]
    if evaluate_on == "validation":
        test, train = carve_validation(train, train_size, test_size, name)
    test, train = test[:test_size], train[:train_size]
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(
            f"task {name!r} has {len(examples)} examples: too few for a train and a test part",
            "choose tasks with at least 2 examples",
        )
    return [examples[i] for i in train], [examples[i] for i in test]


def to_samples(task: TextTask, examples: list[TextExample], part: str) -> Samples:
    """Text samples; for multiple choice, ``labels`` index the correct choice, else -1."""
    mc = task.scorer == MULTIPLE_CHOICE
    return Samples(
        f"{task.source}/{task.name}/{part}",
        [e.key for e in examples],
        [e.choices.index(e.answers[0]) if mc else -1 for e in examples],
        prompts=[e.prompt for e in examples],
        choices=[e.choices for e in examples] if mc else None,
        answers=[e.answers for e in examples],
    )


def build_stream(
    name: str,
    tasks: list[TextTask],
    heldout: list[TextTask],
    seed: int,
    train_per_task: int,
    test_per_task: int,
    protocol: dict,
    evaluate_on: str = "test",
) -> Scenario:
    if evaluate_on not in EVALUATE_ON:
        raise ConfigError(
            f"evaluate_on={evaluate_on!r} is not one of {', '.join(EVALUATE_ON)}",
            "use scenario.evaluate_on=test (the reported split) or validation (for tuning)",
        )
    if not tasks:
        raise ConfigError(f"scenario {name!r} has no tasks", "name at least one task")
    if train_per_task < 1 or test_per_task < 1:
        raise ConfigError(
            "train_per_task and test_per_task must be positive",
            "e.g. --set scenario.train_per_task=32",
        )

    def make(index: int, task: TextTask) -> Task:
        if task.train is not None:  # the source's own split: take prefixes in a seeded order
            rng = np.random.RandomState(seed)
            pool = rng.permutation(len(task.train))
            if evaluate_on == "validation":
                held, pool = carve_validation(pool, train_per_task, test_per_task, task.name)
                test = [task.train[i] for i in held]
            else:
                test = [task.examples[i] for i in rng.permutation(len(task.examples))]
            train = [task.train[i] for i in pool[:train_per_task]]
            test = test[:test_per_task]
        else:
            train, test = split_examples(
                task.examples, seed, train_per_task, test_per_task, task.name, evaluate_on
            )
        empty = np.zeros(0, dtype=np.int64)
        return Task(
            index,
            empty,
            0,
            to_samples(task, train, "train"),
            to_samples(task, test, evaluate_on),
            name=task.name,
            scorer=task.scorer,
        )

    stream = [make(i, t) for i, t in enumerate(tasks)]
    held = [make(len(tasks) + i, t) for i, t in enumerate(heldout)]
    return Scenario(
        name=name,
        kind="instruction",
        tasks=stream,
        class_names=[],
        class_order=[],
        protocol={
            **protocol,
            "tasks": [t.name for t in tasks],
            "heldout": [t.name for t in heldout],
            "scorers": {t.name: t.scorer for t in [*tasks, *heldout]},
            "seed": seed,
            "train_per_task": train_per_task,
            "test_per_task": test_per_task,
            "split": f"seeded permutation; first {TEST_POOL} test pool, rest train pool",
            "evaluate_on": evaluate_on,
        },
        evaluate_unseen=True,  # every task after every step: FWT needs acc[i-1, i]
        default_backbone=DEFAULT_LM,
        heldout=held,
    )


def _names(value: str | list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return list(value)


@register_scenario("bigbench-instruct")
def bigbench_instruct(
    tasks: str = ",".join(BIGBENCH_STREAM),
    heldout: str = ",".join(BIGBENCH_HELDOUT),
    train_per_task: int = 32,
    test_per_task: int = 32,
    seed: int = 1993,
    archive: str | None = None,
    evaluate_on: str = "test",
) -> Scenario:
    """Offline instruction stream: BIG-bench JSON tasks in a fixed order, plus held-out tasks.

    ``archive``: a local ``bigbench-1.0.0.tar.gz`` to read instead of the one
    ``clbench setup`` fetches."""
    stream, held = _names(tasks), _names(heldout)
    overlap = sorted(set(stream) & set(held))
    if overlap:
        raise ConfigError(
            f"{', '.join(overlap)} cannot be both trained on and held out",
            "remove them from scenario.heldout",
        )
    if archive is not None and not Path(archive).is_file():
        raise ConfigError(f"BIG-bench archive not found: {archive}", "pass an existing .tar.gz")
    read = read_bigbench(stream + held, Path(archive) if archive else None)
    return build_stream(
        "bigbench-instruct",
        read[: len(stream)],
        read[len(stream) :],
        seed,
        train_per_task,
        test_per_task,
        {"dataset": "bigbench-1.0.0", "choice_order": "BIG-bench's: sorted, RandomState(42)"},
        evaluate_on,
    )


@register_scenario("trace")
def trace(
    train_per_task: int = 500, test_per_task: int = 100, seed: int = 1993, evaluate_on: str = "test"
) -> Scenario:
    """TRACE's 8 tasks in its order (C-STANCE ... 20Minuten), read from <data root>/TRACE."""
    return build_stream(
        "trace",
        read_trace(),
        [],
        seed,
        train_per_task,
        test_per_task,
        {"dataset": "trace"},
        evaluate_on,
    )


@register_scenario("olora-benchmark")
def olora_benchmark(
    order: str = "order1",
    train_per_task: int = 1000,
    test_per_task: int = 500,
    seed: int = 1993,
    evaluate_on: str = "test",
) -> Scenario:
    """The O-LoRA / ProgPrompt benchmark (orders 1-3: 4 tasks, 4-6: 15 tasks), generated labels."""
    return build_stream(
        f"olora-benchmark-{order}" if order.startswith("order") else "olora-benchmark",
        read_olora(order),
        [],
        seed,
        train_per_task,
        test_per_task,
        {"dataset": "olora-benchmark", "order": order},
        evaluate_on,
    )


@register_scenario("superni")
def superni(
    tasks: str = "",
    train_per_task: int = 100,
    test_per_task: int = 100,
    seed: int = 1993,
    evaluate_on: str = "test",
) -> Scenario:
    """SuperNI task files as CITB streams them (a comma list or a CITB order file), ROUGE-L."""
    return build_stream(
        "superni",
        read_superni(tasks),
        [],
        seed,
        train_per_task,
        test_per_task,
        {"dataset": "superni"},
        evaluate_on,
    )
