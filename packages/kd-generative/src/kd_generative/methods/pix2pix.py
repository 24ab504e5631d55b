"""Pix2Pix's training pieces on kd-core's loop: the L1 term, the conditional-GAN term, its discriminator signal,
Adam with β1 = 0.5 and the learning rate held then decayed linearly to zero.

Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017:
G* = arg min_G max_D L_cGAN(G, D) + λ·L_L1(G) with λ = 100; the discriminator's objective is halved; Adam
(lr 2e-4, β1 = 0.5); the learning rate is kept for the first half of training and decays linearly to zero over
the second half. The discriminator is the PatchGAN, conditioned on the input (``D(x, y)``), and is held and
stepped by ``kd_core.gan.DiscriminatorSignal``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from kd_core.engine import OptimizerFactory
from kd_core.gan import DiscriminatorSignal
from kd_core.losses import l1
from kd_core.objective import Term
from kd_core.signals import Signal
from torch import nn

from kd_generative.models.patchgan import build_patchgan

if TYPE_CHECKING:
    from kd_generative.tasks.config import GanConfig

__all__ = ["LAMBDA_L1", "adam", "adversarial_term", "discriminator_signal", "pix2pix_lr", "reconstruction_term"]

#: Pix2Pix's weight of the L1 term against the cGAN term's 1.
LAMBDA_L1 = 100.0


def adam(lr: float, beta1: float = 0.5) -> OptimizerFactory:
    """An Adam factory with betas (``beta1``, 0.999): Pix2Pix's optimizer."""
    def make(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))
    return make


def pix2pix_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Pix2Pix's schedule over a phase's optimizer steps: constant for the first half, then linear to zero."""
    half = max(total_steps, 1) / 2.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, max(0.0, (2 * half - step) / half)))


def reconstruction_term(weight: float, name: str = "rec") -> Term:
    """``weight · ‖G(x) − y‖₁`` (the batch's ``target``)."""
    return Term(name, l1, student="logits", target="target", weight=weight)


def discriminator_signal(gan: GanConfig, in_channels: int, out_channels: int = 3,
                         teacher: Signal | None = None) -> DiscriminatorSignal:
    """A PatchGAN of ``gan``'s size on (input, image) pairs, with Adam (``gan.lr``, ``gan.beta1``), wrapping
    ``teacher`` (or nothing)."""
    discriminator = build_patchgan(in_channels, out_channels, base=gan.base, n_layers=gan.n_layers)
    return DiscriminatorSignal(discriminator, teacher, optimizer=adam(gan.lr, gan.beta1), real="target",
                               condition="input", mode=gan.mode)


def adversarial_term(signal: DiscriminatorSignal, weight: float, name: str = "gan") -> Term:
    """``weight · ℓ(D(x, G(x)), real)``: the generator's side of the cGAN loss against ``signal``'s discriminator."""
    return Term(name, signal.generator_loss(), student="logits", inputs={"condition": "input"}, weight=weight)
