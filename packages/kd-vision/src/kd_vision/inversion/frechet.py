"""Feature Fréchet distance: the Fréchet distance between Gaussian fits of two sets of features.

FD(a, b) = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}). With the penultimate features of a fixed
digits classifier it stands in for FID (Heusel et al., NeurIPS 2017), whose Inception weights are not
available offline. Computed with numpy/scipy.

With fewer samples than feature dimensions (a few hundred images, hundreds of features) the trace of the
square root comes from the samples instead of the D × D covariances: with centred rows X_a, X_b,
Σ_a Σ_b = X_aᵀ (X_a X_bᵀ) X_b / ((n−1)(m−1)) has the non-zero eigenvalues of M Mᵀ, M = X_a X_bᵀ / √((n−1)(m−1)),
so tr((Σ_a Σ_b)^{1/2}) is the sum of M's singular values (exact, and an n × m SVD instead of D × D
eigen-decompositions).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from kd_core.errors import ConfigError
from kd_core.taps import TapSet
from torch import nn

__all__ = ["frechet_distance", "penultimate_features"]


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = scipy.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((Σ_a Σ_b)^{1/2}) = Σ √λ_i(Σ_a^{1/2} Σ_b Σ_a^{1/2}): the same eigenvalues, from a symmetric PSD matrix."""
    root_a = _symmetric_sqrt(cov_a)
    values = scipy.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def _trace_sqrt_from_samples(centred_a: np.ndarray, centred_b: np.ndarray) -> float:
    """tr((Σ_a Σ_b)^{1/2}) as the nuclear norm of X_a X_bᵀ / √((n−1)(m−1)) (see the module doc)."""
    scale = np.sqrt((len(centred_a) - 1) * (len(centred_b) - 1))
    return float(scipy.linalg.svdvals(centred_a @ centred_b.T / scale).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between the Gaussian fits (mean, unbiased covariance) of rows of ``a`` ``[N, D]`` and ``b`` ``[M, D]``.

    The matrix square root's trace comes from symmetric eigen-decompositions of the covariances (no complex
    parts) when both sets have more rows than D, else from the singular values of the n × m sample product.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError("features", "two 2-D arrays [N, D] and [M, D] with the same D",
                          f"{a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("features", "at least 2 rows in each set", f"{len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    if min(len(a), len(b)) <= a.shape[1]:
        xa, xb = a - mu_a, b - mu_b
        traces = float((xa ** 2).sum() / (len(a) - 1) + (xb ** 2).sum() / (len(b) - 1))
        cross = _trace_sqrt_from_samples(xa, xb)
    else:
        cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
        traces = float(np.trace(cov_a) + np.trace(cov_b))
        cross = _trace_sqrt_product(cov_a, cov_b)
    value = float(((mu_a - mu_b) ** 2).sum() + traces - 2.0 * cross)
    return max(value, 0.0)


def penultimate_features(model: nn.Module, images: torch.Tensor, tap: str = "in:fc", batch_size: int = 256
                         ) -> np.ndarray:
    """The ``tap`` features (flattened) of ``model`` in eval mode over ``images`` ``[N, ...]``."""
    taps = TapSet(model, [tap])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start: start + batch_size].to(device)
                out = taps.run(lambda m, x: m(x), model, batch)
                chunks.append(out[tap].flatten(1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()
