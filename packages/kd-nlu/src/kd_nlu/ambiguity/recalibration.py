"""Re-calibration of extremely ambiguous training samples (Park, Jeong, Cho & Park, arXiv:2406.09719, phase 2).

After self-distillation, the lower head's distribution ``p_ℓ`` marks training samples as extremely
ambiguous; the classifier then continues on those samples only, toward ``p_ℓ`` (KL, no CE by default),
undoing the confidence that CE built on them. Flag rules (ours; the paper's abstract fixes none):

- ``entropy``: the ``ceil(q · N)`` samples with the highest entropy ``H(p_ℓ)``;
- ``margin``: the same count by ``1 − max p_ℓ``;
- ``disagreement``: every sample whose gold label is not the arg-max of ``p_ℓ`` (``q`` unused).

Ties in the score keep the lower sample index first (a stable sort), so flags are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from torch.utils.data import Dataset

FlagRule = Literal["entropy", "margin", "disagreement"]
TARGET_KEY = "lower_logits"


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ConfigError("probs", "a tensor of probability rows [N, C] with C ≥ 2",
                          getattr(probs, "shape", type(probs).__name__))
    probs = probs.detach().double()
    if (probs < 0).any() or not torch.allclose(probs.sum(-1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-4):
        raise ConfigError("probs", "non-negative rows that sum to 1", "rows that do not",
                          hint="pass softmax(lower logits), not logits")
    return probs


def ambiguity_scores(probs: torch.Tensor, rule: Literal["entropy", "margin"] = "entropy") -> torch.Tensor:
    """Per-sample ambiguity: entropy ``−Σ p log p`` (nats) or ``1 − max p``."""
    probs = _check_probs(probs)
    if rule == "entropy":
        return -torch.xlogy(probs, probs).sum(-1)
    if rule == "margin":
        return 1.0 - probs.max(-1).values
    raise ConfigError("rule", "'entropy' or 'margin'", rule)


def flag_ambiguous(probs: torch.Tensor, quantile: float = 0.3, rule: FlagRule = "entropy",
                   labels: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """A boolean mask of the training samples to re-calibrate (see the module docstring for the rules)."""
    if rule == "disagreement":
        probs = _check_probs(probs)
        if labels is None:
            raise ConfigError("labels", "gold labels for the 'disagreement' rule", None)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != probs.shape[:1]:
            raise ConfigError("labels", f"one label per row ({len(probs)})", tuple(labels.shape))
        return probs.argmax(-1) != labels
    if isinstance(quantile, bool) or not isinstance(quantile, int | float) or not 0 <= quantile <= 1:
        raise ConfigError("quantile", "the flagged fraction q in [0, 1]", quantile)
    scores = ambiguity_scores(probs, rule)
    count = math.ceil(quantile * len(scores) - 1e-9)
    order = torch.sort(-scores, stable=True).indices
    mask = torch.zeros(len(scores), dtype=torch.bool)
    mask[order[:count]] = True
    return mask


def recalibration_objective(temperature: float = 1.0, ce_weight: float = 0.0) -> Objective:
    """KL from the stored lower-layer logits (batch key ``lower_logits``) to the classifier, plus an optional
    CE floor (``ce_weight`` > 0) for when accuracy drops."""
    terms = [Term("recalibrate", kl_divergence, student="logits", target=TARGET_KEY, temperature=temperature,
                  direction="forward")]
    if ce_weight > 0:
        terms.append(Term("ce", cross_entropy, student="logits", target="label", weight=ce_weight))
    return Objective(*terms)


class TargetsDataset(Dataset):
    """The samples ``indices`` of ``dataset``, each with its row of ``targets`` under ``key``."""

    def __init__(self, dataset: Dataset, targets: torch.Tensor, indices: Sequence[int] | torch.Tensor,
                 key: str = TARGET_KEY) -> None:
        if len(targets) != len(dataset):  # type: ignore[arg-type]
            raise ConfigError("targets", f"one row per sample ({len(dataset)})", len(targets))  # type: ignore[arg-type]
        self.dataset, self.targets, self.key = dataset, targets, key
        self.indices = [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
        if not self.indices:
            raise ConfigError("indices", "at least one flagged sample to re-calibrate", 0,
                              hint="raise recalibration.quantile or use another flag rule")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source = self.indices[index]
        return {**self.dataset[source], self.key: self.targets[source]}
