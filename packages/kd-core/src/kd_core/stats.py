"""Paired comparisons of two arms over the same seeds: the mean difference, its 95 % t-interval, a verdict.

Two arms trained on the same seeds (same initialisation, same data order) differ per seed by
``d_i = a_i - b_i``. The interval is ``mean(d) ± t_{n-1, (1+c)/2} · sd(d) / sqrt(n)`` (Student's t,
``sd`` with ``n - 1`` degrees of freedom). A claim "a beats b" is

- *held* when the whole interval lies on the claimed side of zero,
- *not held* when the whole interval lies on the other side,
- *inconclusive* when it contains zero, or when there is a single seed (no interval at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy.stats import t as student_t

from kd_core.errors import ConfigError

Verdict = Literal["held", "not held", "inconclusive"]

__all__ = ["PairedComparison", "Verdict", "paired_difference", "t_half_width"]


def t_half_width(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the two-sided ``confidence`` t-interval of the mean of ``values``; None for one value."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(student_t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` per seed, its mean and t-interval, and the verdict on the claim that ``a`` beats ``b``.

    ``higher_is_better`` says which side the claim is on (accuracy: True; ECE, NLL: False).
    ``low``/``high`` are None with a single seed.
    """

    a: str
    b: str
    metric: str
    differences: tuple[float, ...]
    mean: float
    low: float | None
    high: float | None
    confidence: float
    higher_is_better: bool
    verdict: Verdict

    @property
    def n(self) -> int:
        """How many paired seeds."""
        return len(self.differences)

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (None with a single seed)."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``results.json`` (``n`` and ``half_width`` included)."""
        return {**asdict(self), "differences": list(self.differences), "n": self.n, "half_width": self.half_width}


def _finite_list(values: Sequence[float], argument: str) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ConfigError(argument, "a sequence of numbers (one per seed)", type(values).__name__)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(argument, "finite numbers (one per seed)", v)
        out.append(float(v))
    return out


def paired_difference(a: Sequence[float], b: Sequence[float], *, a_name: str = "a", b_name: str = "b",
                      metric: str = "value", higher_is_better: bool = True,
                      confidence: float = 0.95) -> PairedComparison:
    """Compare ``a`` and ``b`` seed by seed (``a[i]`` and ``b[i]`` from the same seed).

    Raises ``ConfigError`` for sequences of different lengths, no seeds, non-finite values or a
    confidence outside (0, 1).
    """
    xs, ys = _finite_list(a, a_name), _finite_list(b, b_name)
    if len(xs) != len(ys):
        raise ConfigError(b_name, f"{len(xs)} values, one per seed of {a_name!r}", f"{len(ys)} values")
    if not xs:
        raise ConfigError(a_name, "at least one seed", "none")
    if not 0 < confidence < 1:
        raise ConfigError("confidence", "a number in (0, 1)", confidence)
    diffs = tuple(x - y for x, y in zip(xs, ys, strict=True))
    mean = sum(diffs) / len(diffs)
    half = t_half_width(diffs, confidence)
    low, high = (None, None) if half is None else (mean - half, mean + half)
    verdict: Verdict = "inconclusive"
    if low is not None and high is not None:
        # the interval of the improvement a brings over b (a sign flip when lower is better)
        worst, best = (low, high) if higher_is_better else (-high, -low)
        verdict = "held" if worst > 0 else "not held" if best < 0 else "inconclusive"
    return PairedComparison(a=a_name, b=b_name, metric=metric, differences=diffs, mean=mean, low=low, high=high,
                            confidence=confidence, higher_is_better=higher_is_better, verdict=verdict)
