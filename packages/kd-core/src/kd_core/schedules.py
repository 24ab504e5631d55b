"""Schedules: callables ``progress -> value`` with progress in [0, 1] over a phase.

Used for temperatures, loss weights and annealing factors. ``as_schedule`` turns a plain number into
a ``Constant``, so a ``Term`` accepts either.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kd_core.errors import ConfigError


@runtime_checkable
class Schedule(Protocol):
    """A value that depends on training progress (0 at a phase's first step, 1 at its end)."""

    def __call__(self, progress: float) -> float: ...


def _clip(progress: float) -> float:
    return min(max(float(progress), 0.0), 1.0)


def _is_number(value: object) -> bool:
    """A finite real number (``bool`` is not a number here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_numbers(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not _is_number(value):
            raise ConfigError(name, f"a finite number for {type(owner).__name__}", value)


@dataclass(frozen=True)
class Constant:
    """The same value throughout."""

    value: float

    def __post_init__(self) -> None:
        _check_numbers(self, "value")

    def __call__(self, progress: float) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Linear:
    """From ``start`` at progress 0 to ``end`` at progress 1, linearly."""

    start: float
    end: float

    def __post_init__(self) -> None:
        _check_numbers(self, "start", "end")

    def __call__(self, progress: float) -> float:
        p = _clip(progress)
        return self.start + (self.end - self.start) * p


@dataclass(frozen=True)
class Cosine:
    """From ``start`` to ``end`` along half a cosine (slow, fast, slow)."""

    start: float
    end: float

    def __post_init__(self) -> None:
        _check_numbers(self, "start", "end")

    def __call__(self, progress: float) -> float:
        p = _clip(progress)
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * p))


@dataclass(frozen=True)
class Step:
    """Piecewise constant: ``values[i]`` from ``boundaries[i-1]`` (inclusive) to ``boundaries[i]``."""

    values: Sequence[float]
    boundaries: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ConfigError("values", f"{len(self.boundaries) + 1} values for {len(self.boundaries)} "
                              "boundaries", len(self.values))
        if not all(_is_number(v) for v in self.values):
            raise ConfigError("values", "finite numbers", list(self.values))
        bounds = list(self.boundaries)
        if not all(_is_number(b) and 0.0 <= b <= 1.0 for b in bounds) or bounds != sorted(bounds):
            raise ConfigError("boundaries", "increasing progress values in [0, 1]", bounds)

    def __call__(self, progress: float) -> float:
        return float(self.values[bisect.bisect_right(list(self.boundaries), _clip(progress))])


@dataclass(frozen=True)
class Annealing:
    """Annealing-KD's factor Φ = s/τ_max, where the stage s runs 1..τ_max in equal slices of the phase.

    Jafari et al., "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163). Equivalently
    Φ(T) = 1 − (T−1)/τ_max with T stepping down from τ_max to 1. The last stage absorbs no remainder
    here: progress is continuous, so each stage covers exactly 1/τ_max of the phase.
    """

    max_temperature: int

    def __post_init__(self) -> None:
        if (not isinstance(self.max_temperature, int) or isinstance(self.max_temperature, bool)
                or self.max_temperature < 1):
            raise ConfigError("max_temperature", "an integer ≥ 1", self.max_temperature)

    def stage(self, progress: float) -> int:
        """The integer stage s in 1..τ_max at this progress."""
        return min(int(_clip(progress) * self.max_temperature) + 1, self.max_temperature)

    def __call__(self, progress: float) -> float:
        return self.stage(progress) / self.max_temperature


def as_schedule(value: float | Schedule, argument: str = "value") -> Schedule:
    """A ``Schedule`` from a number (``Constant``) or a schedule (returned as is)."""
    if isinstance(value, bool):
        raise ConfigError(argument, "a number or a schedule", value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise ConfigError(argument, "a finite number or a schedule", value)
        return Constant(float(value))
    if callable(value):
        return value
    raise ConfigError(argument, "a number or a schedule (a callable of progress)", value)
