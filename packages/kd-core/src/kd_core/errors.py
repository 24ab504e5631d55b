"""One exception family for kd: every message names the argument, what was expected and what came."""

from __future__ import annotations

from typing import Any


class KDError(Exception):
    """Base of every error kd raises on purpose.

    ``argument``, ``expected`` and ``received`` are kept as attributes so that tools can show them;
    the message always contains all three.
    """

    def __init__(self, argument: str, expected: str, received: Any, hint: str = "") -> None:
        self.argument = argument
        self.expected = expected
        self.received = received
        self.hint = hint
        message = f"{_printable(str(argument))}: expected {_printable(str(expected))}, received {received!r}"
        if hint:
            message += f". {_printable(str(hint))}"
        super().__init__(message)


def _printable(text: str) -> str:
    """``text`` with control characters (a line break typed into a ``--set`` key, say) written as escapes, so
    that an error stays one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(KDError, ValueError):
    """A value given to kd (a loss argument, a schedule, a model pair) is out of range or inconsistent."""


class TapError(KDError, KeyError):
    """A tap path does not name a module of the model."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return Exception.__str__(self)


class RecipeError(KDError, ValueError):
    """A recipe cannot be found, or its YAML or an override does not validate."""


class CheckpointError(KDError, RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class RunDirError(KDError, RuntimeError):
    """A run directory would be overwritten, or a resume does not match the run it resumes."""


class CacheError(KDError, RuntimeError):
    """A teacher-output cache is missing, incomplete or was built under other settings."""


class DataError(KDError, RuntimeError):
    """An offline data source is missing or its files do not match their manifest."""


class NonFiniteLossError(KDError, RuntimeError):
    """The loss became NaN or infinite: training stopped before the bad update, and nothing was written after it."""
