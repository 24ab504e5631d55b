"""Adversarial (GAN) training on the one loop: a discriminator that a signal holds and the engine steps.

``DiscriminatorSignal(discriminator, signal=...)`` wraps a teacher signal (or none) and adds a discriminator
with its own optimizer. Nothing in ``Distiller`` changes; the signal uses the hooks every signal has:

- ``trainable()`` adds the discriminator, so the backend wraps it with the student. ``state_dict()`` holds
  it and its optimizer, so it is checkpointed and resumed like a co-trained teacher.
- ``optimizers()`` adds its optimizer. The engine steps it with the student's, with the same clipping,
  precision, gradient accumulation and LR schedule.
- ``loss()`` is the discriminator's loss on the real images and the student's images. The engine passes
  the student's outputs detached, so this loss trains the discriminator only:
  ``½·[ℓ(D(c, y), real) + ℓ(D(c, G(x)), fake)]``.
- ``generator_loss()`` gives the generator's adversarial loss, ``ℓ(D(c, G(x)), real)``, for an objective
  ``Term``. It runs the discriminator with its parameters detached (``torch.func.functional_call``), so its
  gradient reaches the generator and never the discriminator.

One backward pass per step serves both networks, and both gradients are taken at the discriminator's
parameters before this step's update (simultaneous updates). The Pix2Pix code updates D first and then G
against the updated D; the difference is one step of lag. ``ℓ`` is binary cross-entropy on logits
(``"vanilla"``, Goodfellow et al. 2014; Pix2Pix) or least squares (``"lsgan"``, Mao et al. 2017). The
engine logs the discriminator's terms under ``teacher_loss/`` (the prefix of every signal's own loss).

``c`` is the conditioning input, ``batch[condition]``, for a conditional discriminator ``D(c, image)``
such as Pix2Pix's PatchGAN. With ``condition=None`` the discriminator is called as ``D(image)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from kd_core.errors import ConfigError
from kd_core.objective import ObjectiveResult
from kd_core.signals import Batch, Forward, Signal, TeacherOutput
from kd_core.taps import LOGITS

if TYPE_CHECKING:
    from kd_core.engine import Distiller

__all__ = ["GAN_MODES", "DiscriminatorSignal", "GeneratorAdversarialLoss", "gan_loss"]

#: The adversarial losses ``gan_loss`` knows.
GAN_MODES = ("vanilla", "lsgan")


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """The mean loss of discriminator ``logits`` against an all-real (``real=True``) or all-fake label.

    ``vanilla``: binary cross-entropy on logits. ``lsgan``: mean squared error to 1 (real) or 0 (fake).
    """
    if mode not in GAN_MODES:
        raise ConfigError("mode", f"one of {', '.join(GAN_MODES)}", mode)
    logits = logits.float()
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


def _call(discriminator: nn.Module, image: torch.Tensor, condition: torch.Tensor | None,
          params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    args = (image,) if condition is None else (condition, image)
    if params is None:
        return discriminator(*args)
    return torch.func.functional_call(discriminator, params, args)


class GeneratorAdversarialLoss:
    """The generator's side: ``ℓ(D(condition, fake), real)``. Gradients reach ``fake`` and never D's parameters.

    Use it as a term's loss: ``Term("gan", loss, student="logits", inputs={"condition": "input"})``. It is a
    plain callable, not an ``nn.Module``, so the objective does not train the discriminator's parameters.
    The discriminator runs in its current mode: in training mode, its BatchNorm uses this batch's
    statistics, as in Pix2Pix's generator step.
    """

    def __init__(self, discriminator: nn.Module, mode: str = "vanilla") -> None:
        if not isinstance(discriminator, nn.Module):
            raise ConfigError("discriminator", "a torch.nn.Module", type(discriminator).__name__)
        if mode not in GAN_MODES:
            raise ConfigError("mode", f"one of {', '.join(GAN_MODES)}", mode)
        self.discriminator, self.mode = discriminator, mode

    def __call__(self, fake: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return gan_loss(_call(self.discriminator, fake, condition, params), True, self.mode)


class DiscriminatorSignal(Signal):
    """A teacher signal plus a discriminator trained alongside the student; see the module doc.

    - ``signal``: the teacher signal to serve, or None for a generator trained without a teacher.
    - ``optimizer``: a factory for the discriminator's optimizer (default: Adam, lr 2e-4, betas (0.5, 0.999),
      Pix2Pix's settings).
    - ``real``: the batch key of the real images.
    - ``fake``: the student output tap holding the generated images.
    - ``condition``: the batch key of the conditioning input, or None for an unconditional discriminator.
    """

    def __init__(self, discriminator: nn.Module, signal: Signal | None = None,
                 optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 real: str = "target", fake: str = LOGITS, condition: str | None = "input",
                 mode: str = "vanilla") -> None:
        if not isinstance(discriminator, nn.Module):
            raise ConfigError("discriminator", "a torch.nn.Module", type(discriminator).__name__)
        if signal is not None and not isinstance(signal, Signal):
            raise ConfigError("signal", "a kd_core Signal or None", type(signal).__name__)
        if mode not in GAN_MODES:
            raise ConfigError("mode", f"one of {', '.join(GAN_MODES)}", mode)
        self.discriminator, self.inner, self.mode = discriminator, signal, mode
        self.real, self.fake, self.condition = real, fake, condition
        self.make_optimizer = optimizer or (lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)))
        self.optimizer: torch.optim.Optimizer | None = None

    def generator_loss(self) -> GeneratorAdversarialLoss:
        """The generator's adversarial loss against this signal's discriminator (for an objective term)."""
        return GeneratorAdversarialLoss(self.discriminator, self.mode)

    def bind(self, taps: Sequence[str], forward: Forward) -> None:
        """Bind the wrapped signal; build the discriminator's optimizer."""
        if self.inner is not None:
            self.inner.bind(taps, forward)
        self.optimizer = self.make_optimizer(self.discriminator.parameters())

    def __call__(self, batch: Batch, progress: float = 0.0) -> TeacherOutput:
        if not self.discriminator.training:
            self.discriminator.train()
        return self.inner(batch, progress) if self.inner is not None else {}

    def modules(self) -> dict[str, nn.Module]:
        """The wrapped signal's networks (the discriminator serves no outputs)."""
        return self.inner.modules() if self.inner is not None else {}

    def trainable(self) -> dict[str, nn.Module]:
        """The wrapped signal's trainable modules and the discriminator."""
        inner = self.inner.trainable() if self.inner is not None else {}
        return {**inner, "discriminator": self.discriminator}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The wrapped signal's optimizers, then the discriminator's (built by ``bind``)."""
        inner = self.inner.optimizers() if self.inner is not None else []
        return [*inner, *([self.optimizer] if self.optimizer is not None else [])]

    def loss(self, outputs: TeacherOutput, student_outputs: TeacherOutput, batch: Batch,
             progress: float) -> ObjectiveResult:
        """The discriminator's loss on real and (detached) generated images, plus the wrapped signal's own."""
        if self.real not in batch:
            raise ConfigError("real", f"a batch key among {sorted(batch)}", self.real)
        if self.condition is not None and self.condition not in batch:
            raise ConfigError("condition", f"a batch key among {sorted(batch)}", self.condition)
        if self.fake not in student_outputs:
            raise ConfigError("fake", f"a student output among {sorted(student_outputs)}", self.fake)
        condition = batch[self.condition] if self.condition is not None else None
        fake = student_outputs[self.fake].detach()
        real_term = gan_loss(_call(self.discriminator, batch[self.real], condition), True, self.mode)
        fake_term = gan_loss(_call(self.discriminator, fake, condition), False, self.mode)
        terms = {"discriminator/real": real_term, "discriminator/fake": fake_term}
        total = 0.5 * (real_term + fake_term)
        own = (self.inner.loss(outputs, student_outputs, batch, progress)
               if self.inner is not None and self.inner.trainable() else None)
        if own is not None:
            total = total + own.total
            terms.update(own.terms)
        return ObjectiveResult(total=total, terms=terms)

    def evaluated(self) -> dict[str, nn.Module]:
        """The wrapped signal's evaluated models."""
        return self.inner.evaluated() if self.inner is not None else {}

    def prepare(self, distiller: Distiller, train: Any) -> None:
        """Prepare the wrapped signal; move the discriminator to the run's device."""
        if self.inner is not None:
            self.inner.prepare(distiller, train)
        self.discriminator.to(distiller.backend.device)

    def classes(self, sample: Batch) -> int | None:
        """The wrapped signal's logits width (None without one)."""
        return self.inner.classes(sample) if self.inner is not None else None
