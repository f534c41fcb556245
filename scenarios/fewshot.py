"""Few-shot class-incremental scenarios (FSCIL): a base session with every
training image of the base classes, then N-way K-shot sessions.

Sessions come either from the published CEC/TOPIC index files (CIFAR-100
60 + 8 x 5-way 5-shot, CUB-200 100 + 10 x 10-way 5-shot, miniImageNet 60 + 8 x
5-way 5-shot; classes in the datasets' natural order) or are drawn from a seed
for any dataset. The test set after session t is every test image of the
classes seen so far; base and novel accuracy and their harmonic mean are
computed from the stored matrix (clbench.metrics.few_shot_metrics).

The index files of sessions 2 and later are shipped in ``scenarios/splits/fscil``
(from the CEC repository, MIT licence); session 1 is by definition every
training image of the base classes, so it is not shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from clbench.data import LabelledData
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, Task, class_order
from clbench.scenarios.emoji import EMOJI_IMAGE_SIZE, read_emoji
from clbench.scenarios.readers.cifar import read_cifar100
from clbench.scenarios.readers.cub import read_cub200
from clbench.scenarios.readers.miniimagenet import read_miniimagenet

SESSION_FILES = Path(__file__).resolve().parent / "splits" / "fscil"


def draw_sessions(
    data: LabelledData, order: np.ndarray, base: int, ways: int, shots: int, seed: int
) -> list[np.ndarray]:
    """Train indices of each novel session: ``shots`` images per class, drawn with ``seed``.

    Each class's images are sorted by key before the draw, so the result depends
    only on the seed and the dataset's contents, not on file-system order.
    """
    rng = np.random.RandomState(seed)
    keys = data.train.keys.astype(str)
    sessions = []
    for start in range(base, len(order), ways):
        chosen = []
        for cls in order[start : start + ways]:
            members = np.flatnonzero(data.train.labels == cls)
            members = members[np.argsort(keys[members], kind="stable")]
            if len(members) < shots:
                raise ConfigError(
                    f"class {data.class_names[cls]!r} has {len(members)} training images, "
                    f"fewer than {shots} shots",
                    "lower shots or drop small classes",
                )
            chosen.append(np.sort(members[rng.permutation(len(members))[:shots]]))
        sessions.append(np.concatenate(chosen))
    return sessions


def few_shot(
    data: LabelledData,
    name: str,
    base: int,
    ways: int,
    shots: int,
    sessions: int | None = None,
    seed: int = 1993,
    shuffle: bool = True,
    session_indices: list[np.ndarray] | None = None,
    protocol: dict | None = None,
) -> Scenario:
    """A base session of ``base`` classes, then ``sessions`` sessions of ``ways`` x ``shots``.

    With ``session_indices`` (train positions per novel session, from published
    files) classes keep the natural order and the sessions are checked against
    ``ways`` and ``shots``; otherwise the class order is the seed's permutation
    and the shots are drawn with ``seed``.
    """
    n = data.num_classes
    available = (n - base) // ways
    sessions = available if sessions is None else sessions
    if base <= 0 or ways <= 0 or shots <= 0 or not 0 <= sessions <= available:
        raise ConfigError(
            f"{name}: {base} base classes + {sessions} sessions of {ways} ways does not fit "
            f"{n} classes",
            f"use at most {available} sessions",
        )
    used = base + sessions * ways
    if session_indices is None:
        order = class_order(n, seed, shuffle)[:used]
        novel = draw_sessions(data, order, base, ways, shots, seed)[:sessions]
    else:
        order = np.arange(used)
        novel = session_indices[:sessions]
        _check_sessions(data, novel, order, base, ways, shots, name)
    remap = np.full(n, -1, dtype=np.int64)
    remap[order] = np.arange(used)
    train_labels, test_labels = remap[data.train.labels], remap[data.test.labels]
    tasks = [
        Task(
            0,
            np.arange(base),
            base,
            data.train.subset(np.flatnonzero((train_labels >= 0) & (train_labels < base))).relabel(
                remap
            ),
            data.test.subset(np.flatnonzero((test_labels >= 0) & (test_labels < base))).relabel(
                remap
            ),
        )
    ]
    for s, indices in enumerate(novel, start=1):
        lo, hi = base + (s - 1) * ways, base + s * ways
        tasks.append(
            Task(
                s,
                np.arange(lo, hi),
                hi,
                data.train.subset(indices).relabel(remap),
                data.test.subset(np.flatnonzero((test_labels >= lo) & (test_labels < hi))).relabel(
                    remap
                ),
            )
        )
    return Scenario(
        name=name,
        kind="few-shot-class-incremental",
        tasks=tasks,
        class_names=[data.class_names[c] for c in order],
        class_order=[int(c) for c in order],
        protocol={
            "dataset": data.name,
            "base_classes": base,
            "ways": ways,
            "shots": shots,
            "sessions": sessions,
            "seed": seed,
            "sessions_from": "published index files"
            if session_indices is not None
            else f"drawn with seed {seed}",
            **(protocol or {}),
        },
    )


def _check_sessions(
    data: LabelledData,
    sessions: list[np.ndarray],
    order: np.ndarray,
    base: int,
    ways: int,
    shots: int,
    name: str,
) -> None:
    for s, indices in enumerate(sessions, start=1):
        labels = data.train.labels[indices]
        expected = order[base + (s - 1) * ways : base + s * ways]
        classes, counts = np.unique(labels, return_counts=True)
        if not np.array_equal(classes, np.sort(expected)) or not (counts == shots).all():
            raise ConfigError(
                f"{name}: session {s + 1} file has classes {classes.tolist()} with counts "
                f"{counts.tolist()}, expected {ways} classes {expected.tolist()} x {shots} shots",
                "the session files do not match this dataset; re-fetch it",
            )


def read_session_files(
    folder: Path, data: LabelledData, key_of: Callable[[str], str], count: int
) -> list[np.ndarray]:
    """Train positions of sessions 2..count+1 from CEC ``session_<t>.txt`` files.

    ``key_of`` turns a line of the file into a sample key of ``data.train``.
    """
    position = {k: i for i, k in enumerate(data.train.keys)}
    sessions = []
    for t in range(2, count + 2):
        path = folder / f"session_{t}.txt"
        if not path.exists():
            raise ConfigError(f"few-shot session file {path} is missing", "reinstall clbench")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        try:
            sessions.append(np.array([position[key_of(line)] for line in lines], dtype=np.int64))
        except KeyError as exc:
            raise ConfigError(
                f"{path.name} names {exc.args[0]!r}, which is not a training image of {data.name}",
                "the dataset on disk differs from the published one",
            ) from exc
    return sessions


def _published_or_drawn(
    data: LabelledData,
    name: str,
    folder: str,
    key_of: Callable[[str], str],
    base: int,
    ways: int,
    shots: int,
    sessions: int,
    published: bool,
    seed: int,
    image_size: int,
) -> Scenario:
    indices = (
        read_session_files(SESSION_FILES / folder, data, key_of, sessions) if published else None
    )
    return few_shot(
        data,
        name,
        base,
        ways,
        shots,
        sessions,
        seed=seed,
        session_indices=indices,
        protocol={"image_size": image_size},
    )


@register_scenario("cifar100-fscil")
def cifar100_fscil(published: bool = True, seed: int = 1993) -> Scenario:
    """CIFAR-100 few-shot CIL: 60 base classes + 8 sessions of 5-way 5-shot (CEC session files)."""
    return _published_or_drawn(
        read_cifar100(),
        "cifar100-fscil",
        "cifar100",
        lambda line: f"train/{int(line)}",
        60,
        5,
        5,
        8,
        published,
        seed,
        224,
    )


@register_scenario("cub200-fscil")
def cub200_fscil(published: bool = True, seed: int = 1993) -> Scenario:
    """CUB-200 few-shot CIL: 100 base classes + 10 sessions of 10-way 5-shot (CEC session files)."""
    return _published_or_drawn(
        read_cub200(),
        "cub200-fscil",
        "cub200",
        lambda line: line,
        100,
        10,
        5,
        10,
        published,
        seed,
        224,
    )


@register_scenario("miniimagenet-fscil")
def miniimagenet_fscil(published: bool = True, seed: int = 1993) -> Scenario:
    """miniImageNet few-shot CIL: 60 base classes + 8 sessions of 5-way 5-shot (CEC splits and session files)."""
    return _published_or_drawn(
        read_miniimagenet(),
        "miniimagenet-fscil",
        "mini_imagenet",
        lambda line: f"miniimagenet/images/{line.split('/')[3]}",
        60,
        5,
        5,
        8,
        published,
        seed,
        224,
    )


@register_scenario("emoji-fscil")
def emoji_fscil(
    vendor: str = "google",
    base: int = 52,
    ways: int = 5,
    shots: int = 3,
    sessions: int | None = None,
    seed: int = 1993,
    min_per_class: int = 6,
    allow_proprietary: bool = False,
) -> Scenario:
    """Emoji subcategories, few-shot CIL: 52 base classes + 7 sessions of 5-way 3-shot drawn with the seed (offline)."""
    data = read_emoji(vendor, min_per_class, allow_proprietary)
    return few_shot(
        data,
        "emoji-fscil",
        base,
        ways,
        shots,
        sessions,
        seed=seed,
        protocol={
            "image_size": EMOJI_IMAGE_SIZE,
            "vendor": vendor,
            "test": "half of each subcategory's emoji, held out",
        },
    )
