"""What the instruction-task readers share: one task's examples as plain text.

A reader yields :class:`TextTask` records (prompt, answer, optional choices);
the instruction scenario (``scenarios/instructions.py``) decides the split and
the order. Malformed files and empty tasks get one clear message each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError

#: How a task is scored (names of ``clbench.scoring``).
MULTIPLE_CHOICE = "multiple-choice"
EXACT_MATCH = "exact-match"
ROUGE_L = "rouge-l"


@dataclass(frozen=True)
class TextExample:
    prompt: str
    """The full model input: the task's instruction, the example, the answer cue."""
    answers: tuple[str, ...]
    """Reference answers (any one counts); for multiple choice, the correct choice."""
    choices: tuple[str, ...] | None = None
    """Candidate continuations, scored by log-likelihood (multiple-choice tasks only)."""
    key: str = ""
    """Stable id within the task (position in the source file unless the source names one)."""


@dataclass(frozen=True)
class TextTask:
    name: str
    scorer: str
    examples: list[TextExample]
    instruction: str = ""
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    train: list[TextExample] | None = None
    """The source's own training split, where it has one (else the scenario splits)."""

    def __post_init__(self) -> None:
        if not self.examples and not self.train:
            raise ClbenchError(
                f"task {self.name!r} in {self.source} has no examples",
                "remove the task from the list or fix its file",
            )


def read_json(path: Path, what: str) -> Any:
    """Parse ``path`` or raise one message naming the file and the position."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ClbenchError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "re-download the file; it may be truncated",
        ) from exc
    except UnicodeDecodeError as exc:
        raise ClbenchError(f"{what} {path} is not UTF-8 text", "re-download the file") from exc


def parse_json_bytes(data: bytes, where: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClbenchError(
            f"{where} is not valid JSON: {exc}", "re-fetch the archive with `clbench setup`"
        ) from exc


def require(record: Any, keys: tuple[str, ...], where: str) -> None:
    """Check that a JSON record is an object with ``keys``."""
    if not isinstance(record, dict) or any(k not in record for k in keys):
        got = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ClbenchError(
            f"{where}: expected an object with {', '.join(keys)}, got {got}",
            "check that the file is in the benchmark's original layout",
        )
