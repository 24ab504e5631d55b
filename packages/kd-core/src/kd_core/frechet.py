"""Fréchet distance between the Gaussian fits of two feature sets (the math behind FID, any feature extractor).

FD(a, b) = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})  (Dowson & Landau 1982; used as FID by Heusel et al.,
NeurIPS 2017). Domains pick the features (kd-vision: a digits classifier's penultimate layer; kd-generative: a
small network trained on bundled photos); the number is comparable only between sets embedded by the same network.

Everything runs in float64 with symmetric eigen-decompositions, so no complex parts appear:
tr((Σ_a Σ_b)^{1/2}) = Σ √λ_i(Σ_a^{1/2} Σ_b Σ_a^{1/2}), the same eigenvalues from a symmetric PSD matrix.
With fewer samples than feature dimensions the trace comes from the samples instead of the D × D covariances:
with centred rows X_a, X_b, Σ_a Σ_b = X_aᵀ (X_a X_bᵀ) X_b / ((n−1)(m−1)) has the non-zero eigenvalues of M Mᵀ,
M = X_a X_bᵀ / √((n−1)(m−1)), so tr((Σ_a Σ_b)^{1/2}) is the sum of M's singular values (exact, and an n × m SVD).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from kd_core.errors import ConfigError

__all__ = ["frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics"]


def _as_float64(value: Any) -> np.ndarray:
    """A float64 numpy copy of an array or a tensor (on any device)."""
    if hasattr(value, "detach"):  # a torch tensor; torch is not imported for numpy callers
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _feature_rows(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float64(a), _as_float64(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError("features", "two 2-D arrays [N, D] and [M, D] with the same D",
                          f"{a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("features", "at least 2 rows in each set (a covariance needs 2 samples)",
                          f"{len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ConfigError("features", "finite values", "NaN or infinite entries")
    return a, b


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = scipy.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((Σ_a Σ_b)^{1/2}) from the eigenvalues of the symmetric PSD matrix Σ_a^{1/2} Σ_b Σ_a^{1/2}."""
    root_a = _symmetric_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    values = scipy.linalg.eigvalsh((product + product.T) / 2.0)  # symmetrise away rounding before eigvalsh
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def _trace_sqrt_from_samples(centred_a: np.ndarray, centred_b: np.ndarray) -> float:
    """tr((Σ_a Σ_b)^{1/2}) as the nuclear norm of X_a X_bᵀ / √((n−1)(m−1)) (see the module doc)."""
    scale = np.sqrt((len(centred_a) - 1) * (len(centred_b) - 1))
    return float(scipy.linalg.svdvals(centred_a @ centred_b.T / scale).sum())


def gaussian_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of the rows of ``features`` ``[N, D]``, N ≥ 2."""
    rows, _ = _feature_rows(features, features)
    return rows.mean(0), np.atleast_2d(np.cov(rows, rowvar=False))


def frechet_distance_from_statistics(mu_a: Any, cov_a: Any, mu_b: Any, cov_b: Any) -> float:
    """FD between the Gaussians N(``mu_a``, ``cov_a``) and N(``mu_b``, ``cov_b``); covariances symmetric PSD."""
    mu_a, mu_b = _as_float64(mu_a), _as_float64(mu_b)
    cov_a, cov_b = np.atleast_2d(_as_float64(cov_a)), np.atleast_2d(_as_float64(cov_b))
    dim = mu_a.shape[0] if mu_a.ndim == 1 else -1
    if mu_b.shape != (dim,) or cov_a.shape != (dim, dim) or cov_b.shape != (dim, dim):
        raise ConfigError("statistics", "means [D] and covariances [D, D] with one D",
                          f"{mu_a.shape}, {cov_a.shape}, {mu_b.shape}, {cov_b.shape}")
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * _trace_sqrt_product(cov_a, cov_b))
    return max(value, 0.0)


def frechet_distance(a: Any, b: Any) -> float:
    """FD between the Gaussian fits (mean, unbiased covariance) of the rows of ``a`` ``[N, D]`` and ``b`` ``[M, D]``.

    Arrays or tensors (any device), computed in float64. When both sets have more rows than D the covariances
    are eigen-decomposed; otherwise the trace of the square root comes from an n × m SVD (module doc). Small
    negative values from rounding are clipped to 0.
    """
    a, b = _feature_rows(a, b)
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = a - mu_a, b - mu_b
    traces = float((xa ** 2).sum() / (len(a) - 1) + (xb ** 2).sum() / (len(b) - 1))
    value = float(((mu_a - mu_b) ** 2).sum() + traces - 2.0 * _trace_sqrt_from_samples(xa, xb))
    return max(value, 0.0)
