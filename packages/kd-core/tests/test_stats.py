"""Paired t-intervals and verdicts against values computed by hand."""

from __future__ import annotations

import math

import pytest
from kd_core.errors import ConfigError
from kd_core.stats import paired_difference, t_half_width

T_975_DF2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables: 4.303)


def test_interval_matches_the_hand_computation() -> None:
    # differences 1, 2, 3: mean 2, sd 1, half-width t(2) * 1 / sqrt(3)
    cmp = paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0], a_name="kd", b_name="scratch",
                            metric="accuracy")
    assert cmp.differences == (1.0, 2.0, 3.0) and cmp.n == 3
    assert cmp.mean == pytest.approx(2.0)
    assert cmp.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-9)
    assert cmp.low == pytest.approx(2.0 - T_975_DF2 / math.sqrt(3))
    assert cmp.high == pytest.approx(2.0 + T_975_DF2 / math.sqrt(3))
    assert cmp.verdict == "inconclusive"  # [-0.484, 4.484] spans 0


def test_verdicts_held_not_held_inconclusive() -> None:
    # d = 2, 2.1, 1.9: sd 0.1, half-width 0.248 -> [1.75, 2.25], entirely above 0
    assert paired_difference([12.0, 12.1, 11.9], [10.0, 10.0, 10.0]).verdict == "held"
    # the reverse: entirely below 0
    assert paired_difference([10.0, 10.0, 10.0], [12.0, 12.1, 11.9]).verdict == "not held"
    # d = 1, -1, 0.5: the interval spans 0
    assert paired_difference([1.0, -1.0, 0.5], [0.0, 0.0, 0.0]).verdict == "inconclusive"


def test_lower_is_better_flips_the_claim() -> None:
    # ECE of a is lower than b's by 2 on every seed: the claim "a beats b" holds
    cmp = paired_difference([1.0, 1.1, 0.9], [3.0, 3.0, 3.0], higher_is_better=False, metric="ece")
    assert cmp.mean == pytest.approx(-2.0) and cmp.verdict == "held"
    assert paired_difference([3.0, 3.0, 3.0], [1.0, 1.1, 0.9], higher_is_better=False).verdict == "not held"


def test_one_seed_has_no_interval_and_no_verdict() -> None:
    cmp = paired_difference([5.0], [1.0])
    assert cmp.low is None and cmp.high is None and cmp.half_width is None
    assert cmp.verdict == "inconclusive" and cmp.as_dict()["n"] == 1


def test_identical_differences_have_a_zero_width_interval() -> None:
    cmp = paired_difference([2.0, 3.0], [1.0, 2.0])
    assert cmp.half_width == 0.0 and cmp.verdict == "held"
    assert paired_difference([1.0, 1.0], [1.0, 1.0]).verdict == "inconclusive"


def test_half_width_of_a_sample() -> None:
    assert t_half_width([1.0]) is None
    # 0, 2: mean 1, sd sqrt(2); t(1) 97.5 % = 12.7062
    assert t_half_width([0.0, 2.0]) == pytest.approx(12.706204736174707 * math.sqrt(2) / math.sqrt(2))


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="scratch") as info:
        paired_difference([1.0, 2.0], [1.0], a_name="kd", b_name="scratch")
    assert info.value.argument == "scratch"
    with pytest.raises(ConfigError, match="kd"):
        paired_difference([float("nan")], [1.0], a_name="kd")
    with pytest.raises(ConfigError, match="at least one seed"):
        paired_difference([], [])
    with pytest.raises(ConfigError, match="confidence"):
        paired_difference([1.0], [1.0], confidence=1.5)
