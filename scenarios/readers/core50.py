"""CORe50 (128x128 release): ``core50/core50_128x128/s<session>/o<object>/*.png``.

Eleven sessions (backgrounds and lighting) of 50 objects in 10 categories; the
domain-incremental protocol uses the object as the class and the session as the
domain.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from clbench.data import LabelledData
from clbench.download import RemoteFile
from clbench.errors import ClbenchError
from clbench.scenarios.readers.base import DatasetSpec, declare, image_files, locate, samples

CORE50 = declare(
    DatasetSpec(
        "core50",
        "CORe50 (128x128)",
        "core50/core50_128x128",
        files=(
            RemoteFile(
                "http://bias.csr.unibo.it/maltoni/download/core50/core50_128x128.zip",
                "core50_128x128.zip",
                "md5:745f3373fed08d69343f1058ee559e13",
                into="core50",
            ),
        ),
        note="4.8 GB, 164,866 images",
    )
)
NUM_OBJECTS = 50
NUM_SESSIONS = 11
#: The protocol's split (PROTOCOLS.md): eight training sessions, three held-out test sessions.
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS = (3, 7, 10)


@cache
def _session(root: Path, session: int) -> tuple[list[str], list[int]]:
    folder = root / "core50" / "core50_128x128" / f"s{session}"
    if not folder.is_dir():
        raise ClbenchError(
            f"CORe50 session folder {folder} is missing", "re-fetch: `clbench fetch core50`"
        )
    keys, labels = [], []
    for obj in range(1, NUM_OBJECTS + 1):
        sub = folder / f"o{obj}"
        if sub.is_dir():
            files = image_files(sub)
            keys.extend(f"core50/core50_128x128/s{session}/o{obj}/{f}" for f in files)
            labels.extend([obj - 1] * len(files))
    return keys, labels


def read_core50_sessions(sessions: tuple[int, ...]) -> dict[int, tuple[list[str], list[int]]]:
    """Keys and object labels (0..49) of each requested session."""
    root = locate(CORE50)
    return {s: _session(root, s) for s in sessions}


def read_core50(
    train_sessions: tuple[int, ...] = TRAIN_SESSIONS, test_sessions: tuple[int, ...] = TEST_SESSIONS
) -> LabelledData:
    """CORe50 as one labelled set: train = the training sessions, test = the held-out ones."""
    root = locate(CORE50)
    parts = {}
    for part, sessions in (("train", train_sessions), ("test", test_sessions)):
        keys, labels, domains = [], [], []
        for s in sessions:
            k, lab = _session(root, s)
            keys += k
            labels += lab
            domains += [f"s{s}"] * len(k)
        parts[part] = samples(f"core50/{part}", root, keys, labels, domains)
    return LabelledData(
        "core50", [f"o{i}" for i in range(1, NUM_OBJECTS + 1)], parts["train"], parts["test"]
    )
