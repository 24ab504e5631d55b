"""kd_core.frechet: hand-computed cases, the closed form for two Gaussians, symmetry and the few-samples path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from kd_core.errors import ConfigError
from kd_core.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics


def test_one_dimensional_sets_give_mean_and_std_gaps_by_hand() -> None:
    a = np.array([[0.0], [2.0]])  # mean 1, unbiased variance 2
    b = np.array([[3.0], [3.0], [6.0]])  # mean 4, unbiased variance 3
    # 1-D: (μa − μb)² + σa² + σb² − 2 σa σb = 9 + 2 + 3 − 2√6
    assert math.isclose(frechet_distance(a, b), 14.0 - 2.0 * math.sqrt(6.0), rel_tol=1e-12)


def test_diagonal_gaussians_have_the_per_axis_closed_form() -> None:
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()  # 5 + (4 + 1 + 0)
    assert expected == 10.0
    value = frechet_distance_from_statistics(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert math.isclose(value, expected, rel_tol=1e-12)


def test_general_gaussians_match_the_textbook_formula_with_scipy_sqrtm() -> None:
    rng = np.random.default_rng(0)
    root_a, root_b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = root_a @ root_a.T, root_b @ root_b.T
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    textbook = (((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b)
                - 2.0 * np.trace(np.real(scipy.linalg.sqrtm(cov_a @ cov_b))))
    assert math.isclose(frechet_distance_from_statistics(mu_a, cov_a, mu_b, cov_b), textbook, rel_tol=1e-9)


def test_identical_sets_are_at_zero_and_the_distance_is_symmetric_and_non_negative() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.normal(0.2, 1.5, size=(30, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert math.isclose(frechet_distance(x, y), frechet_distance(y, x), rel_tol=1e-9)
    assert frechet_distance(x, y) > 0.0
    few = rng.normal(size=(3, 6))  # fewer rows than dimensions: the SVD path
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(few, y) >= 0.0


def test_fewer_samples_than_dimensions_equals_the_covariance_formula() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 40)) @ rng.normal(size=(40, 40)), rng.normal(size=(15, 40)) + 0.3
    through_covariances = frechet_distance_from_statistics(*gaussian_statistics(x), *gaussian_statistics(y))
    assert math.isclose(frechet_distance(x, y), through_covariances, rel_tol=1e-6)


def test_tensors_are_accepted_and_float64_is_used() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(25, 3))
    from_tensors = frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert math.isclose(from_tensors, frechet_distance(x.astype(np.float32), y.astype(np.float32)), rel_tol=1e-12)


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ConfigError, match=r"features.*at least 2 rows"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ConfigError, match=r"features.*same D"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ConfigError, match=r"features.*finite"):
        frechet_distance(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="statistics"):
        frechet_distance_from_statistics(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
