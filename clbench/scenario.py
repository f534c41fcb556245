"""Tasks and scenarios: the ordered stream a learner sees.

A scenario owns the class order, the label remapping (``order[i]`` becomes label
``i``), the task sizes and the train/test split, and a hash of that split which
goes into every result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from clbench.data import LabelledData, Samples
from clbench.errors import ConfigError

ScenarioKind = Literal[
    "class-incremental", "domain-incremental", "few-shot-class-incremental", "instruction"
]


#: The protocols a scenario can demand of a learner (``Learner.protocols``).
Protocol = Literal["class-incremental", "domain-incremental", "task-incremental", "instruction"]


@dataclass(frozen=True)
class TrainTask:
    """What a learner may see while learning: the task's training data only."""

    index: int
    classes: np.ndarray
    """Global labels that appear for the first time in this task (all labels, domain-IL)."""
    seen_classes: int
    """Number of classes seen so far, this task included; labels are ``< seen_classes``."""
    train: Samples
    domain: str | None = None
    class_names: tuple[str, ...] = ()
    """Names of ``classes``, in the same order."""
    name: str | None = None
    """The task's own name where it has one (an instruction task, an MTIL dataset)."""
    scorer: str = "accuracy"
    prompt_template: str | None = None
    """The dataset's text prompt for its class names (``"a photo of a {}, a type of pet."``)
    where its protocol fixes one (MTIL); CLIP-style learners default to it."""


@dataclass(frozen=True)
class Task:
    index: int
    classes: np.ndarray
    seen_classes: int
    train: Samples
    test: Samples
    domain: str | None = None
    class_names: tuple[str, ...] = ()
    name: str | None = None
    scorer: str = "accuracy"
    """How outputs on ``test`` become per-sample scores (``clbench.scoring``)."""
    prompt_template: str | None = None

    def train_view(self) -> TrainTask:
        return TrainTask(
            self.index,
            self.classes,
            self.seen_classes,
            self.train,
            self.domain,
            self.class_names,
            self.name,
            self.scorer,
            self.prompt_template,
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: ScenarioKind
    tasks: list[Task]
    class_names: list[str]
    """Indexed by global label."""
    class_order: list[int]
    """Original class ids in the order they are learned: ``class_order[i]`` became label ``i``."""
    protocol: dict = field(default_factory=dict)
    task_incremental: bool = False
    """Whether the test phase is told the task id (then results must say so)."""
    evaluate_unseen: bool = False
    """Whether tasks not yet learned are tested too (needed for forward transfer)."""
    default_backbone: str | None = None
    """The backbone a run uses when none is named (text scenarios name a language model)."""
    heldout: list[Task] = field(default_factory=list)
    """Tasks never learned, tested before the first task and after each one (how much
    general ability survives); their training parts are never handed to the learner."""

    @property
    def tests_before_learning(self) -> bool:
        """Instruction streams are also tested before any learning (the zero-shot row that
        forward transfer and retention are read against)."""
        return self.kind == "instruction"

    def __post_init__(self) -> None:
        # Every task carries its classes' names, filled here once for every generator.
        named = [
            t
            if t.class_names or not len(t.classes)
            else replace(t, class_names=tuple(self.class_names[int(c)] for c in t.classes))
            for t in self.tasks
        ]
        object.__setattr__(self, "tasks", named)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grows_label_space(self) -> bool:
        """Whether each task brings new classes (so scores may only cover the seen ones)."""
        return self.kind in ("class-incremental", "few-shot-class-incremental")

    @property
    def few_shot(self) -> bool:
        """Task 0 is a base session and later ones few-shot sessions (base/novel metrics)."""
        return self.kind == "few-shot-class-incremental"

    @property
    def setting(self) -> Protocol:
        """The protocol a learner must serve on this scenario."""
        if self.kind == "instruction":
            return "instruction"
        if self.task_incremental:
            return "task-incremental"
        return "domain-incremental" if self.kind == "domain-incremental" else "class-incremental"

    @property
    def modality(self) -> str:
        return self.tasks[0].train.modality if self.tasks else "image"

    @property
    def scorers(self) -> list[str]:
        return [t.scorer for t in self.tasks]

    @property
    def split_hash(self) -> str:
        return split_hash([*self.tasks, *self.heldout])  # held-out tasks are part of the split

    def summary(self) -> dict:
        return {
            "tasks": self.num_tasks,
            "classes": self.num_classes,
            "train": sum(len(t.train) for t in self.tasks),
            "test": sum(len(t.test) for t in self.tasks),
        }


def split_hash(tasks: list[Task]) -> str:
    """SHA-256 of every task's (sample id, label) pairs, train and test, in order."""
    digest = hashlib.sha256()
    for task in tasks:
        for part, samples in (("train", task.train), ("test", task.test)):
            digest.update(f"task{task.index}/{part}\n".encode())
            order = np.argsort(samples.keys.astype(str), kind="stable")
            for key, label in zip(samples.keys[order], samples.labels[order], strict=True):
                digest.update(f"{samples.source}:{key}\t{label}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


def class_order(num_classes: int, seed: int = 1993, shuffle: bool = True) -> np.ndarray:
    """The PILOT/PyCIL class order: ``np.random.seed(seed); np.random.permutation(n)``.

    ``RandomState(seed)`` draws exactly what the legacy global RNG draws after
    ``np.random.seed(seed)``, without touching global state.
    """
    if not shuffle:
        return np.arange(num_classes)
    return np.random.RandomState(seed).permutation(num_classes)


def task_sizes(num_classes: int, init_cls: int, increment: int) -> list[int]:
    """``[init_cls] + [increment] * k`` with any remainder as a last, smaller task."""
    if init_cls <= 0 or increment <= 0:
        raise ConfigError(
            f"init_cls and increment must be positive (got {init_cls}, {increment})",
            "B0 Inc10 means init_cls=10 increment=10",
        )
    if init_cls > num_classes:
        raise ConfigError(
            f"the first task asks for {init_cls} classes but the data has {num_classes}",
            f"use init_cls <= {num_classes}",
        )
    sizes = [init_cls]
    left = num_classes - init_cls
    while left > 0:
        sizes.append(min(increment, left))
        left -= sizes[-1]
    return sizes


def class_incremental(
    data: LabelledData,
    name: str,
    init_cls: int | None = None,
    increment: int = 10,
    num_tasks: int | None = None,
    seed: int = 1993,
    shuffle: bool = True,
    protocol: dict | None = None,
) -> Scenario:
    """Split ``data`` into class-incremental tasks (B``init_cls`` Inc``increment``).

    ``num_tasks`` is a convenience: when given, ``increment`` is chosen so that
    the classes fill that many tasks (the last may be smaller).
    """
    n = data.num_classes
    if num_tasks is not None:
        if not 1 <= num_tasks <= n:
            raise ConfigError(
                f"cannot split {n} classes into {num_tasks} tasks",
                f"choose num_tasks between 1 and {n}",
            )
        increment = -(-n // num_tasks)
    init_cls = increment if init_cls is None else init_cls
    sizes = task_sizes(n, init_cls, increment)
    if num_tasks is not None and len(sizes) != num_tasks:
        raise ConfigError(
            f"{n} classes cannot be cut into {num_tasks} equal tasks (increment {increment} "
            f"gives {len(sizes)})",
            "set init_cls and increment explicitly instead of num_tasks",
        )
    order = class_order(n, seed, shuffle)
    remap = np.empty(n, dtype=np.int64)
    remap[order] = np.arange(n)
    train, test = data.train.relabel(remap), data.test.relabel(remap)
    tasks, start = [], 0
    for index, size in enumerate(sizes):
        classes = np.arange(start, start + size)
        train_part = train.subset(np.isin(train.labels, classes))
        test_part = test.subset(np.isin(test.labels, classes))
        if len(train_part) == 0:
            raise ConfigError(f"task {index} of {name!r} has no training samples")
        tasks.append(Task(index, classes, start + size, train_part, test_part))
        start += size
    return Scenario(
        name=name,
        kind="class-incremental",
        tasks=tasks,
        class_names=[data.class_names[c] for c in order],
        class_order=[int(c) for c in order],
        protocol={
            "dataset": data.name,
            "init_cls": init_cls,
            "increment": increment,
            "seed": seed,
            "shuffle": shuffle,
            **(protocol or {}),
        },
    )
