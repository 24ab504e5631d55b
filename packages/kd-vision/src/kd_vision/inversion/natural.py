"""NaturalInversion: a fresh one-to-one generator per batch, the Feature Transfer Pyramid and Adaptive
Channel Scaling.

Kim, Park, Kim and Kim, "NaturalInversion: Data-Free Image Synthesis Improving Real-World Consistency",
AAAI 2022, arXiv:2306.16661. For every batch, new modules are built and optimised for that batch only:

1. the generator G (``OneToOneGenerator``) with latents z ~ N(0, I) ⊕ one-hot(y), Adam lr 1e-3;
2. the FTP decoder (``FeatureTransferPyramid``), Adam lr 5e-4;
3. ACS scales α ∈ R^{B×C×1×1}, initialised N(5, 1), Adam lr 5e-2 (for one-channel digits α scales the
   intensity of each image).

Each iteration: x₀ = jitter(G(z, y)); the teacher's multi-scale features of the detached x₀ (read through
kd-core taps under no-grad); x₁ = FTP(x₀, features) = tanh(conv(x₀ + pyramid)); x = α ⊙ x₁; the teacher
sees jitter(x), and L = CE + w_bn·BN + w_tv·TV + w_l2·‖x‖₂ (on the jittered batch). The lowest-loss batch
is kept, recomputed from the same parameters without jitter. With ``use_ftp`` off, x₁ = x₀; with
``use_acs`` off, x = x₁ (the "generator only" ablation has both off).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.taps import TapSet
from torch import nn

from kd_vision.inversion.augment import jitter
from kd_vision.inversion.generator import OneToOneGenerator
from kd_vision.inversion.loss import PriorWeights, inversion_loss
from kd_vision.inversion.priors import BNStatisticsPrior
from kd_vision.inversion.pyramid import FeatureTransferPyramid, default_pyramid_taps, feature_shapes
from kd_vision.inversion.synthesis import BatchResult, Step

__all__ = ["BatchModules", "NaturalInversion", "init_channel_scales"]


def init_channel_scales(batch_size: int, channels: int, device: torch.device | str = "cpu",
                        mean: float = 5.0, std: float = 1.0) -> torch.Tensor:
    """ACS scales α ``[batch_size, channels, 1, 1]`` drawn from N(mean, std²), a leaf that requires grad."""
    alpha = torch.empty(batch_size, channels, 1, 1, device=device)
    nn.init.normal_(alpha, mean, std)
    return alpha.requires_grad_(True)


@dataclass
class BatchModules:
    """What one batch optimises: its generator and latents, the FTP (or None) and ACS scales (or None)."""

    generator: OneToOneGenerator
    z: torch.Tensor
    ftp: FeatureTransferPyramid | None
    alpha: torch.Tensor | None

    def optimizers(self, lr_generator: float, lr_ftp: float, lr_acs: float) -> list[torch.optim.Optimizer]:
        """One Adam per part, at its own learning rate."""
        optimizers = [torch.optim.Adam(self.generator.parameters(), lr=lr_generator)]
        if self.ftp is not None:
            optimizers.append(torch.optim.Adam(self.ftp.parameters(), lr=lr_ftp))
        if self.alpha is not None:
            optimizers.append(torch.optim.Adam([self.alpha], lr=lr_acs))
        return optimizers


@dataclass
class NaturalInversion:
    """NaturalInversion's synthesis; ``use_ftp``/``use_acs`` switch its components for ablations."""

    iterations: int = 2000
    lr_generator: float = 1e-3
    lr_ftp: float = 5e-4
    lr_acs: float = 5e-2
    latent_dim: int = 1024
    generator_width: int = 128
    use_ftp: bool = True
    use_acs: bool = True
    ftp_taps: Sequence[str] | None = None
    weights: PriorWeights = field(default_factory=PriorWeights)
    jitter: int = 2
    flip: bool = True
    name: str = "natural-inversion"

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError("iterations", "an integer >= 1", self.iterations)
        for name in ("lr_generator", "lr_ftp", "lr_acs"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(name, "a finite learning rate > 0", value)
        if self.ftp_taps is not None:
            self.ftp_taps = list(self.ftp_taps)
            if not self.ftp_taps:
                raise ConfigError("ftp_taps", "one or more tap paths, or None for the default", self.ftp_taps)

    def settings(self) -> dict[str, Any]:
        """The settings, for provenance and reports."""
        return asdict(self)

    def pyramid_taps(self, teacher: nn.Module, image_shape: tuple[int, int, int], device: torch.device
                     ) -> tuple[list[str], list[int]]:
        """The FTP's teacher taps (shallowest first) and their channel counts."""
        example = torch.zeros(2, *image_shape, device=device)
        taps = list(self.ftp_taps) if self.ftp_taps is not None else default_pyramid_taps(teacher, example)
        shapes = feature_shapes(teacher, taps, example)
        bad = {t: s for t, s in zip(taps, shapes) if len(s) != 3}
        if bad:
            raise ConfigError("ftp_taps", "teacher taps of feature maps [B, C, H, W]", bad)
        return taps, [int(s[0]) for s in shapes]

    def fresh_modules(self, batch_size: int, image_shape: tuple[int, int, int], num_classes: int,
                      feature_channels: Sequence[int], device: torch.device) -> BatchModules:
        """New, randomly initialised modules for one batch (never reused across batches)."""
        generator = OneToOneGenerator(num_classes, image_shape, self.latent_dim, self.generator_width).to(device)
        z = torch.randn(batch_size, self.latent_dim, device=device)
        ftp = FeatureTransferPyramid(feature_channels, image_shape[0]).to(device) if self.use_ftp else None
        alpha = init_channel_scales(batch_size, image_shape[0], device) if self.use_acs else None
        return BatchModules(generator, z, ftp, alpha)

    def _render(self, modules: BatchModules, labels: torch.Tensor, taps: TapSet | None, paths: list[str],
                teacher: nn.Module, augment: bool) -> torch.Tensor:
        x0 = modules.generator(modules.z, labels)
        if augment:
            x0 = jitter(x0, self.jitter, self.flip)
        x = x0
        if modules.ftp is not None and taps is not None:
            with torch.no_grad():
                features = taps.run(lambda m, inputs: m(inputs), teacher, x0.detach())
            x = modules.ftp(x0, [features[p] for p in paths])
        if modules.alpha is not None:
            x = x * modules.alpha
        return x

    def synthesize_batch(self, teacher: nn.Module, labels: torch.Tensor, image_shape: tuple[int, int, int],
                         num_classes: int, step: Step) -> BatchResult:
        """Optimise a fresh generator (and FTP, ACS) for ``labels``; return the lowest-loss images."""
        device = labels.device
        prior = BNStatisticsPrior(teacher)
        paths, channels = self.pyramid_taps(teacher, image_shape, device) if self.use_ftp else ([], [])
        taps = TapSet(teacher, paths) if self.use_ftp else None
        modules = self.fresh_modules(len(labels), image_shape, num_classes, channels, device)
        optimizers = modules.optimizers(self.lr_generator, self.lr_ftp, self.lr_acs)
        best_loss, best = math.inf, None
        for _ in range(self.iterations):
            x = self._render(modules, labels, taps, paths, teacher, augment=True)
            seen = jitter(x, self.jitter, self.flip)
            with prior.capture():
                logits = teacher(seen)
            terms = inversion_loss(logits, labels, seen, prior.loss(), self.weights)
            loss = float(terms["total"].detach())
            if loss < best_loss:  # the same parameters, rendered without jitter
                best_loss = loss
                with torch.no_grad():
                    best = self._render(modules, labels, taps, paths, teacher, augment=False).detach().clone()
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            for optimizer in optimizers:
                optimizer.step()
            step(loss)
        assert best is not None
        return BatchResult(best, best_loss)
