"""Argument checks shared by the speech models: each raises ``ConfigError`` naming the argument."""

from __future__ import annotations

import math

from kd_core.errors import ConfigError


def positive_int(argument: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an integer ``>= minimum`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(argument, f"an integer >= {minimum}", value)
    return int(value)


def positive_float(argument: str, value: object) -> float:
    """``value`` if it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(argument, "a finite number > 0", value)
    return float(value)


def non_negative_float(argument: str, value: object) -> float:
    """``value`` if it is a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(argument, "a finite number >= 0", value)
    return float(value)


def probability(argument: str, value: object, closed: bool = False) -> float:
    """``value`` if it lies in ``[0, 1)`` (``[0, 1]`` with ``closed``)."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0.0
            or value > 1.0 or (value == 1.0 and not closed)):
        raise ConfigError(argument, f"a probability in [0, 1{']' if closed else ')'}", value)
    return float(value)
