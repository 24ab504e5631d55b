"""The model-inversion objective: L = CE(f_T(x), y) + w_bn·BN + w_tv·TV(x) + w_l2·‖x‖₂.

Kim et al., "NaturalInversion", AAAI 2022, arXiv:2306.16661; Yin et al., "Dreaming to Distill"
(DeepInversion), CVPR 2020, arXiv:1912.08795. Defaults are NaturalInversion's CIFAR-10 settings:
w_bn = 10, w_tv = 6e-3, w_l2 = 1.5e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError

from kd_vision.inversion.priors import l2_prior, total_variation

__all__ = ["PriorWeights", "inversion_loss"]


@dataclass(frozen=True)
class PriorWeights:
    """Weights of the BN-statistics, total-variation and L2 priors (each finite and >= 0)."""

    bn: float = 10.0
    tv: float = 6e-3
    l2: float = 1.5e-5

    def __post_init__(self) -> None:
        for name in ("bn", "tv", "l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"weights.{name}", "a finite number >= 0", value)


def inversion_loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, bn: torch.Tensor,
                   weights: PriorWeights) -> dict[str, torch.Tensor]:
    """``{"total", "ce", "bn", "tv", "l2"}``: the weighted sum and its unweighted terms.

    ``images`` are the (jittered) images the teacher saw; ``bn`` is the BN-statistics prior of that pass.
    """
    terms = {"ce": F.cross_entropy(logits.float(), labels), "bn": bn, "tv": total_variation(images),
             "l2": l2_prior(images)}
    terms["total"] = terms["ce"] + weights.bn * bn + weights.tv * terms["tv"] + weights.l2 * terms["l2"]
    return terms
