"""BIG-bench JSON tasks read straight from the ``bigbench==1.0.0`` sdist.

``clbench setup`` fetches the 358 MB source archive with ``pip download
--no-deps --no-binary`` (the package itself is never installed: it would pull
TensorFlow, t5 and seqio) and keeps it as it is. A run reads only the
``bigbench/benchmark_tasks/<name>/task.json`` members it needs, in one pass
over the archive, and keeps those few JSON files in the cache so later runs
skip the archive; nothing else is unpacked.

Prompts follow BIG-bench's own JSON-task format: the task's ``task_prefix``
(its instruction), ``example_input_prefix`` + input, the choices when
``append_choices_to_input`` is set, then ``example_output_prefix``; the
defaults are BIG-bench's (``"\\nQ: "``, ``"\\nA: "``, ``"\\n  choice: "``).

Choices are shown, and indexed, in BIG-bench's order, not the file's: sorted,
then permuted by ``numpy.random.RandomState(42)`` afresh for every example
(``default_format_fn`` in ``bigbench/api/json_task.py``, 42 being
``JsonTask``'s default seed). Many task files list the correct answer first
(every example of ``physics`` does), so the file order would teach a tuned
model to pick the first listed choice.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from clbench.assets import PypiAsset, fetch_pypi
from clbench.errors import ClbenchError, ConfigError
from clbench.paths import cache_root
from clbench.scenarios.readers.text import (
    EXACT_MATCH,
    MULTIPLE_CHOICE,
    TextExample,
    TextTask,
    parse_json_bytes,
    require,
)

BIGBENCH = PypiAsset(
    package="bigbench",
    version="1.0.0",
    wheel="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    binary=False,
    unpack=False,
)
MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json"
DEFAULTS = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "append_choices_to_input": True,
}
CHOICE_SEED = 42
"""The seed of BIG-bench's choice permutation (``JsonTask(random_seed=42)``)."""


def shown_choice_order(choices: tuple[str, ...]) -> tuple[str, ...]:
    """BIG-bench's order of an example's choices: sorted, then one seeded permutation."""
    ordered = sorted(choices)
    permutation = np.random.RandomState(CHOICE_SEED).permutation(len(ordered))
    return tuple(ordered[i] for i in permutation)


def archive_path() -> Path:
    return fetch_pypi(BIGBENCH) / BIGBENCH.wheel


def task_cache() -> Path:
    return BIGBENCH.folder / "tasks"


def local_task_cache(archive: Path) -> Path:
    """Where tasks read from a user's own archive are kept: keyed by its path, size and mtime."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_root() / "assets" / "bigbench-local" / key.hexdigest()[:16]


def read_task_files(names: list[str], archive: Path | None = None) -> dict[str, dict]:
    """The parsed ``task.json`` of each named top-level task (cached after the first read)."""
    cache = task_cache() if archive is None else local_task_cache(archive)
    wanted = [n for n in names if not (cache / f"{n}.json").exists()]
    if wanted:
        _extract(archive or archive_path(), wanted, cache)
    out = {}
    for name in names:
        path = cache / f"{name}.json"
        out[name] = parse_json_bytes(path.read_bytes(), f"BIG-bench task {name} ({path})")
    return out


def _extract(archive: Path, names: list[str], cache: Path) -> None:
    members = {MEMBER.format(name=n): n for n in names}
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one streaming pass; stops once every task is found
                name = members.pop(member.name, None)
                if name is None:
                    continue
                data = tar.extractfile(member).read()
                parse_json_bytes(data, f"{member.name} in {archive}")  # refuse bad JSON early
                handle, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(tmp, cache / f"{name}.json")
                if not members:
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ClbenchError(
            f"cannot read the BIG-bench archive {archive}: {exc}",
            f"delete {archive.parent} and run `clbench setup` to fetch it again",
        ) from exc
    if members:
        raise ConfigError(
            f"no BIG-bench JSON task named {', '.join(sorted(members.values()))} in {archive.name}",
            "use the name of a folder under bigbench/benchmark_tasks that holds a task.json",
        )


def parse_task(name: str, task: dict, where: str = "BIG-bench") -> TextTask:
    """One BIG-bench JSON task as prompts, answers and (multiple choice) choices."""
    require(task, ("examples",), f"{where} task {name}")
    fmt = {k: task.get(k, v) for k, v in DEFAULTS.items()}
    append = fmt["append_choices_to_input"]
    append = append if isinstance(append, bool) else str(append).lower() == "true"
    examples = []
    is_mc = any("target_scores" in e for e in task["examples"] if isinstance(e, dict))
    for i, ex in enumerate(task["examples"]):
        here = f"{where} task {name}, example {i}"
        require(ex, ("input",), here)
        body = fmt["task_prefix"] + fmt["example_input_prefix"] + str(ex["input"])
        if is_mc:
            require(ex, ("target_scores",), here)
            scores = ex["target_scores"]
            choices = shown_choice_order(tuple(str(c) for c in scores))
            if len(choices) < 2:
                raise ClbenchError(f"{here} has fewer than two choices", "fix the task file")
            best = str(max(scores, key=lambda c: float(scores[c])))  # the first best, as BIG-bench
            if append:
                body += fmt["choice_prefix"] + fmt["choice_prefix"].join(choices)
            examples.append(
                TextExample(body + fmt["example_output_prefix"], (best,), choices, str(i))
            )
        else:
            require(ex, ("target",), here)
            target = ex["target"]
            answers = (target,) if isinstance(target, str) else tuple(str(t) for t in target)
            if not answers:
                raise ClbenchError(f"{here} has an empty target list", "fix the task file")
            examples.append(TextExample(body + fmt["example_output_prefix"], answers, None, str(i)))
    return TextTask(
        name=name,
        scorer=MULTIPLE_CHOICE if is_mc else EXACT_MATCH,
        examples=examples,
        instruction=fmt["task_prefix"],
        source=f"bigbench-{BIGBENCH.version}",
        info={"preferred_score": task.get("preferred_score"), "keywords": task.get("keywords")},
    )


def read_bigbench(names: list[str], archive: Path | None = None) -> list[TextTask]:
    files = read_task_files(names, archive)
    return [parse_task(n, files[n]) for n in names]
