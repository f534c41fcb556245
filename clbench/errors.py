"""The one exception type users see: a message and the command that fixes it."""

from __future__ import annotations


class ClbenchError(Exception):
    """A user-facing error: what went wrong and what to do about it.

    The CLI prints ``message`` and ``hint`` and exits with status 2; it never
    shows a traceback for this type.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class DataMissingError(ClbenchError):
    """A dataset or weights file is not where clbench looked for it."""


class ConfigError(ClbenchError):
    """A configuration that cannot run: unknown name, impossible split, bad value."""
