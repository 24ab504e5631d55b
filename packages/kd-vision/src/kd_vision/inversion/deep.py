"""DeepInversion: synthetic images optimised pixel by pixel against a frozen teacher.

Yin, Molchanov, Alvarez, Li, Mallya, Hoiem, Jha and Kautz, "Dreaming to Distill: Data-free Knowledge
Transfer via DeepInversion", CVPR 2020, arXiv:1912.08795. Pixels start from N(0, 1); every iteration
jitters them (roll ±2 px, random flip), runs the teacher and minimises
CE + w_bn·BN-statistics + w_tv·TV + w_l2·‖x‖₂ with Adam (lr 0.05, the paper's CIFAR setting). The batch
with the lowest loss is kept, un-jittered. (DeepInversion's "adaptive" competition term is not used.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_vision.inversion.augment import jitter
from kd_vision.inversion.loss import PriorWeights, inversion_loss
from kd_vision.inversion.priors import BNStatisticsPrior
from kd_vision.inversion.synthesis import BatchResult, Step

__all__ = ["DeepInversion"]


@dataclass
class DeepInversion:
    """Pixel-space inversion: ``iterations`` Adam steps at ``lr`` per batch."""

    iterations: int = 2000
    lr: float = 0.05
    weights: PriorWeights = field(default_factory=PriorWeights)
    jitter: int = 2
    flip: bool = True
    name: str = "deep-inversion"

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError("iterations", "an integer >= 1", self.iterations)
        if not isinstance(self.lr, int | float) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError("lr", "a finite learning rate > 0", self.lr)

    def settings(self) -> dict[str, Any]:
        """The settings, for provenance and reports."""
        return asdict(self)

    def synthesize_batch(self, teacher: nn.Module, labels: torch.Tensor, image_shape: tuple[int, int, int],
                         num_classes: int, step: Step) -> BatchResult:
        """Optimise ``len(labels)`` images for ``labels``; return the lowest-loss ones."""
        prior = BNStatisticsPrior(teacher)
        pixels = torch.randn(len(labels), *image_shape, device=labels.device, requires_grad=True)
        optimizer = torch.optim.Adam([pixels], lr=self.lr)
        best_loss, best = math.inf, pixels.detach().clone()
        for _ in range(self.iterations):
            seen = jitter(pixels, self.jitter, self.flip)
            with prior.capture():
                logits = teacher(seen)
            terms = inversion_loss(logits, labels, seen, prior.loss(), self.weights)
            loss = float(terms["total"].detach())
            if loss < best_loss:  # the pixels themselves are the un-jittered images
                best_loss, best = loss, pixels.detach().clone()
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            step(loss)
        return BatchResult(best, best_loss)
