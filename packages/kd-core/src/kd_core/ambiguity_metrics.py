"""Metrics for label ambiguity: how well a model's distribution matches human label distributions.

Used by the label-ambiguity methods (Park & Park, "Deep Model Compression Also Helps Models Capture
Ambiguity", ACL 2023, arXiv:2306.07061; Park, Jeong, Cho & Park, "Self-Knowledge Distillation for
Learning Ambiguity", arXiv:2406.09719), which evaluate as ChaosNLI does:

- ``jensen_shannon_distance``: the per-sample Jensen–Shannon *distance*
  ``sqrt(½ KL(p‖m) + ½ KL(q‖m))``, ``m = (p + q) / 2``, with log base 2 (so it lies in [0, 1]),
  averaged over samples. (``kd_core.metrics.js_divergence_to_soft_labels`` is the mean divergence in
  nats, without the square root; the two are different numbers.)
- ``kl_to_soft_labels`` (re-exported from ``kd_core.metrics``): mean ``KL(human ‖ model)`` in nats;
  zeros in the human distribution are allowed (0 · log 0 = 0).
- ``confidence_on_wrong``: the mean top probability over the samples whose arg-max is not the label
  (the over-confidence the papers aim to reduce); NaN when no prediction is wrong.

Conventions are those of ``kd_core.metrics``: raw logits in (class axis last), floats out, float64
accumulation, bad input raises ``ConfigError`` naming the argument.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kd_core.errors import ConfigError
from kd_core.metrics import (
    _as_logits,
    _kl_rows,
    _logits_and_labels,
    _logits_and_soft_labels,
    accuracy,
    expected_calibration_error,
    kl_to_soft_labels,
)

__all__ = [
    "ambiguity_metrics",
    "confidence_on_wrong",
    "jensen_shannon_distance",
    "jensen_shannon_distances",
    "kl_to_soft_labels",
    "majority_labels",
    "mean_confidence",
]

_LN2 = math.log(2.0)


@torch.no_grad()
def jensen_shannon_distances(logits: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen–Shannon distance (log base 2, in [0, 1]) between ``soft_labels`` and
    ``softmax(logits)``, as a float64 tensor with one value per row."""
    logits, soft = _logits_and_soft_labels(logits, soft_labels)
    q = F.softmax(logits.double(), dim=-1)
    log_m = torch.log(0.5 * (soft + q))  # -inf only where both are 0, which _kl_rows masks out
    divergence_nats = 0.5 * _kl_rows(soft, log_m) + 0.5 * _kl_rows(q, log_m)
    return (divergence_nats / _LN2).clamp(0.0, 1.0).sqrt()


def jensen_shannon_distance(logits: torch.Tensor, soft_labels: torch.Tensor) -> float:
    """Mean per-sample Jensen–Shannon distance (log base 2) to the human distributions (ChaosNLI's JSD)."""
    return float(jensen_shannon_distances(logits, soft_labels).mean())


@torch.no_grad()
def confidence_on_wrong(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean largest softmax probability over the samples predicted wrongly (arg-max ≠ label).

    NaN when every prediction is right (there is nothing to average).
    """
    logits, labels = _logits_and_labels(logits, labels)
    confidence, predicted = F.softmax(logits.double(), dim=-1).max(dim=-1)
    wrong = predicted != labels
    if not bool(wrong.any()):
        return math.nan
    return float(confidence[wrong].mean())


@torch.no_grad()
def mean_confidence(logits: torch.Tensor) -> float:
    """Mean largest softmax probability over all samples."""
    logits, _ = _as_logits(logits)
    return float(F.softmax(logits.double(), dim=-1).max(dim=-1).values.mean())


def majority_labels(soft_labels: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """The majority class of each human distribution, as int64 class indices.

    Ties (several classes sharing the top probability, within 1e-9) go to the lowest index when
    ``seed`` is None, else to one of the tied classes drawn uniformly with a generator seeded by
    ``seed`` (deterministic, and unbiased across classes).
    """
    if not isinstance(soft_labels, torch.Tensor) or soft_labels.dim() != 2 or soft_labels.shape[0] == 0 \
            or not soft_labels.is_floating_point():
        raise ConfigError("soft_labels", "a float tensor of probability rows [N, C]",
                          getattr(soft_labels, "shape", type(soft_labels).__name__))
    soft = soft_labels.detach().double().cpu()
    top = soft.max(dim=-1, keepdim=True).values
    tied = (soft >= top - 1e-9).double()
    if seed is None:
        return tied.argmax(dim=-1)
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(tied, 1, generator=generator).squeeze(-1)


def ambiguity_metrics(logits: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor,
                      n_bins: int = 15) -> dict[str, float]:
    """The label-ambiguity report: ``accuracy`` and ``ece`` against ``labels``, ``jsd`` (distance, base 2)
    and ``kl`` (nats, KL(human ‖ model)) against ``soft_labels``, ``confidence_wrong`` and
    ``mean_confidence``."""
    return {
        "accuracy": accuracy(logits, labels),
        "ece": expected_calibration_error(logits, labels, n_bins=n_bins).ece,
        "jsd": jensen_shannon_distance(logits, soft_labels),
        "kl": kl_to_soft_labels(logits, soft_labels),
        "confidence_wrong": confidence_on_wrong(logits, labels),
        "mean_confidence": mean_confidence(logits),
    }
