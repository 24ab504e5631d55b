"""Training on adversarial inputs inside ``Distiller``, through its ``forward`` hook (no new loop).

``Distiller(forward=AdversarialForward(perturb))`` trains the student on ``perturb(model, batch)``
instead of ``batch["input"]``. The perturbation is built only while the model is in training mode
and gradients are enabled, i.e. inside the engine's training step; shape probes and validation (eval
mode) see the clean input. A frozen teacher is always in eval mode, so even when it shares this
forward it reads the clean input; pass ``FrozenTeacher(teacher, forward=default_forward)`` to make
that explicit. ``perturb`` should attack with the model in eval mode (``eval_mode``) so that BatchNorm
running statistics do not see the attack's forward passes, and must not accumulate parameter
gradients (use ``torch.autograd.grad`` with respect to the input only).

Used by PGD adversarial training and LTD (Chen and Lee, "LTD: Low Temperature Distillation for
Robust Adversarial Training", arXiv:2111.02331).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from kd_core.errors import ConfigError
from kd_core.signals import Forward, default_forward

Perturb = Callable[[nn.Module, Mapping[str, Any]], torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``model`` in eval mode; restore each one's own mode on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


class AdversarialForward:
    """A ``Distiller`` forward that runs the model on ``perturb(model, batch)`` while it trains.

    ``key`` names the batch entry that is perturbed (``"input"``); ``base`` feeds the (possibly
    perturbed) batch to the model. Outside training (eval mode or no gradients) it is ``base``.
    """

    def __init__(self, perturb: Perturb, base: Forward = default_forward, key: str = "input") -> None:
        if not callable(perturb):
            raise ConfigError("perturb", "a callable perturb(model, batch) -> tensor", perturb)
        if not callable(base):
            raise ConfigError("base", "a callable forward(model, batch)", base)
        self.perturb, self.base, self.key = perturb, base, key

    def active(self, model: nn.Module) -> bool:
        """Whether a call now trains on perturbed inputs (training mode, gradients enabled)."""
        return model.training and torch.is_grad_enabled()

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        if not self.active(model):
            return self.base(model, batch)
        if self.key not in batch:
            raise ConfigError("key", f"a batch key among {sorted(batch)}", self.key)
        clean = batch[self.key]
        perturbed = self.perturb(model, batch)
        if not isinstance(perturbed, torch.Tensor) or perturbed.shape != clean.shape:
            raise ConfigError("perturb", f"a tensor of shape {tuple(clean.shape)} like batch[{self.key!r}]",
                              getattr(perturbed, "shape", type(perturbed).__name__))
        return self.base(model, {**batch, self.key: perturbed.detach()})
