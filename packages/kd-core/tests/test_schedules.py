"""Schedules: values at endpoints, midpoints and boundaries; argument validation; ``as_schedule``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kd_core.errors import ConfigError
from kd_core.schedules import Annealing, Constant, Cosine, Linear, Schedule, Step, as_schedule


def test_constant():
    c = Constant(0.3)
    assert [c(p) for p in (0.0, 0.5, 1.0, 7.0)] == [0.3] * 4
    assert isinstance(c(0.1), float)
    assert isinstance(c, Schedule)


def test_linear_endpoints_midpoint_and_clipping():
    s = Linear(4.0, 1.0)
    assert s(0.0) == 4.0
    assert s(1.0) == 1.0
    assert s(0.5) == pytest.approx(2.5)
    assert s(0.25) == pytest.approx(3.25)
    # progress outside [0, 1] is clipped
    assert s(-1.0) == 4.0
    assert s(2.0) == 1.0


def test_cosine_endpoints_and_midpoint():
    s = Cosine(1.0, 0.0)
    assert s(0.0) == pytest.approx(1.0)
    assert s(1.0) == pytest.approx(0.0, abs=1e-12)
    # halfway along half a cosine: exactly the mean of start and end
    assert s(0.5) == pytest.approx(0.5)
    # slow at the start: at 1/4 it has moved less than linearly would, (1 − cos(π/4)) / 2 ≈ 0.146
    assert s(0.25) == pytest.approx(1 - (1 - math.cos(math.pi / 4)) / 2)
    assert 1 - s(0.25) < 0.25
    up = Cosine(2.0, 6.0)
    assert (up(0.0), up(0.5), up(1.0)) == pytest.approx((2.0, 4.0, 6.0))
    assert up(3.0) == pytest.approx(6.0)


def test_step_boundaries_are_inclusive_starts():
    # values[i] holds from boundaries[i-1] (inclusive) up to boundaries[i] (exclusive)
    s = Step([1.0, 0.5, 0.1], [0.3, 0.6])
    assert s(0.0) == 1.0
    assert s(0.2999) == 1.0
    assert s(0.3) == 0.5  # a boundary belongs to the step that starts there
    assert s(0.5999) == 0.5
    assert s(0.6) == 0.1
    assert s(1.0) == 0.1
    assert s(-3) == 1.0 and s(3) == 0.1
    assert Step([2.0], [])(0.7) == 2.0


@pytest.mark.parametrize(("values", "boundaries", "argument"), [
    ([1.0, 2.0], [0.2, 0.5], "values"),       # one value too few
    ([1.0, 2.0, 3.0], [0.6, 0.3], "boundaries"),  # not increasing
    ([1.0, 2.0], [1.5], "boundaries"),          # outside [0, 1]
    ([1.0, 2.0], [-0.1], "boundaries"),
    ([1.0, 2.0], [float("nan")], "boundaries"),
    (["a", 2.0], [0.5], "values"),              # not numbers
])
def test_step_rejects_bad_arguments(values, boundaries, argument):
    with pytest.raises(ConfigError) as info:
        Step(values, boundaries)
    assert info.value.argument == argument


def test_annealing_quarters():
    a = Annealing(4)
    # τ_max = 4: Φ = s/4 with s = 1, 2, 3, 4 over the four quarters, 1.0 at the end
    assert [a(p) for p in (0.0, 0.1, 0.2499)] == [0.25] * 3
    assert [a(p) for p in (0.25, 0.4999)] == [0.5] * 2
    assert [a(p) for p in (0.5, 0.74)] == [0.75] * 2
    assert [a(p) for p in (0.75, 0.99)] == [1.0] * 2
    assert a(1.0) == 1.0
    assert [a.stage(p) for p in (0.0, 0.3, 0.6, 0.9, 1.0)] == [1, 2, 3, 4, 4]
    assert Annealing(1)(0.0) == 1.0


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", None, True])
def test_annealing_rejects_bad_max_temperature(bad):
    with pytest.raises(ConfigError, match="max_temperature"):
        Annealing(bad)


@pytest.mark.parametrize("make", [
    lambda: Constant("x"), lambda: Constant(float("nan")), lambda: Linear(0.0, "y"),
    lambda: Linear(float("inf"), 1.0), lambda: Cosine(None, 1.0), lambda: Cosine(1.0, True),
])
def test_value_schedules_reject_non_numbers(make):
    with pytest.raises(ConfigError):
        make()


def test_as_schedule():
    s = as_schedule(3)
    assert isinstance(s, Constant) and s(0.9) == 3.0
    assert as_schedule(0.5)(0.2) == 0.5
    lin = Linear(0, 1)
    assert as_schedule(lin) is lin
    fn = lambda p: 2 * p  # noqa: E731
    assert as_schedule(fn) is fn
    # numpy scalars are numbers too
    assert as_schedule(np.float32(0.25))(0.0) == 0.25
    assert as_schedule(np.int64(2))(1.0) == 2.0
    for bad in (True, "0.5", None, [1.0], float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="weight") as info:
            as_schedule(bad, "weight")
        assert info.value.argument == "weight"
