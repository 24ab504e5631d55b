"""L∞ PGD attacks and a robust-accuracy evaluator for image classifiers with normalised inputs.

PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", arXiv:1706.06083):
a uniform random start in the ε-ball, then K steps ``x ← clip(Π_ε(x + α·sign ∇_x L))``. ε and α are
given in **pixel units** (images in [0, 1]); inputs are normalised as ``(pixel − mean) / std``, so the
attack works on the normalised tensor with ε/std, α/std and clamps to the normalised images of 0 and 1
after every step. The loss is pluggable: cross-entropy against hard labels (int) or soft labels (a
probability row per sample), the Carlini–Wagner margin ``max_{j≠y} z_j − z_y`` (arXiv:1608.04644), or
any ``loss(logits, target) -> scalar`` to maximise. The model is attacked in eval mode (BatchNorm
statistics untouched) and its modes are restored afterwards; parameter gradients are never written.

Used by LTD (Chen and Lee, arXiv:2111.02331), PGD-AT and the defensive-distillation foil.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from kd_core.adversarial import eval_mode
from kd_core.errors import ConfigError
from torch import nn

AttackLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["PGD", "LogitScale", "attack_loss", "correct_under", "cw_margin", "dlr_loss", "robust_accuracy",
           "soft_or_hard_cross_entropy"]


def soft_or_hard_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy against int labels ``[B]`` or probability rows ``[B, C]``."""
    logits = logits.float()
    if target.dtype.is_floating_point:
        return -(target.float() * F.log_softmax(logits, dim=-1)).sum()
    return F.cross_entropy(logits, target.long(), reduction="sum")


def cw_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed CW margin ``max_{j≠y} z_j − z_y`` (y: the label, or the argmax of soft labels)."""
    logits = logits.float()
    labels = target.argmax(-1) if target.dtype.is_floating_point else target.long()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[-1]).bool(), float("-inf"))
    return (others.max(-1).values - true).sum()


def dlr_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed difference-of-logits-ratio loss ``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`` (π: the logits sorted in
    decreasing order; y: the label, or the argmax of soft labels).

    Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020 (AutoAttack's second loss): invariant to shifting and rescaling the logits, so a model
    that hides its gradients behind a temperature cannot flatten it. Needs at least 3 classes.
    """
    logits = logits.float()
    if logits.shape[-1] < 3:
        raise ConfigError("logits", "at least 3 classes for the DLR loss", logits.shape[-1])
    labels = target.argmax(-1) if target.dtype.is_floating_point else target.long()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[-1]).bool(), float("-inf")).max(-1).values
    ranked = logits.sort(dim=-1, descending=True).values
    return (-(true - others) / (ranked[:, 0] - ranked[:, 2] + 1e-12)).sum()


_LOSSES: dict[str, AttackLoss] = {"ce": soft_or_hard_cross_entropy, "cw": cw_margin, "dlr": dlr_loss}


def attack_loss(loss: str | AttackLoss) -> AttackLoss:
    """The loss a ``PGD`` maximises: ``"ce"``, ``"cw"`` or a callable ``loss(logits, target)``."""
    if callable(loss):
        return loss
    if loss not in _LOSSES:
        raise ConfigError("loss", f"one of {sorted(_LOSSES)} or a callable loss(logits, target)", loss)
    return _LOSSES[loss]


def _number(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(argument, "a number", value)
    return float(value)


@dataclass(frozen=True)
class PGD:
    """L∞ PGD with ε = ``epsilon`` and step α = ``step_size`` (pixel units) for ``steps`` = K steps.

    ``mean`` and ``std`` describe the input normalisation (``(pixel − mean) / std``); the defaults
    (0, 1) mean inputs are raw pixels in [0, 1]. ``random_start`` draws the start uniformly in the ball.
    ``restarts`` > 1 runs the attack that many times from fresh random starts and keeps, per sample, the first
    input the model misclassifies (as AutoAttack's restarts do).
    """

    epsilon: float
    step_size: float
    steps: int
    loss: str | AttackLoss = "ce"
    random_start: bool = True
    mean: float = 0.0
    std: float = 1.0
    restarts: int = 1

    def __post_init__(self) -> None:
        if _number("epsilon", self.epsilon) < 0:
            raise ConfigError("epsilon", "ε ≥ 0 (pixel units)", self.epsilon)
        if _number("step_size", self.step_size) <= 0:
            raise ConfigError("step_size", "α > 0 (pixel units)", self.step_size)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError("steps", "an integer K ≥ 1", self.steps)
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) or self.restarts < 1:
            raise ConfigError("restarts", "an integer ≥ 1", self.restarts)
        if _number("std", self.std) <= 0:
            raise ConfigError("std", "a normalisation std > 0", self.std)
        _number("mean", self.mean)
        attack_loss(self.loss)

    @property
    def bounds(self) -> tuple[float, float]:
        """The valid input range in normalised units: the images of pixels 0 and 1."""
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial inputs for ``model`` near ``x`` that raise ``loss(model(x_adv), target)``."""
        x = x.detach()
        if self.epsilon == 0:
            return x.clone()
        best = self._once(model, x, target, generator)
        labels = target.argmax(-1) if target.dtype.is_floating_point else target
        for _ in range(self.restarts - 1):
            with torch.no_grad(), eval_mode(model):
                fooled = model(best).argmax(-1) != labels
            if bool(fooled.all()):
                break
            fresh = self._once(model, x, target, generator)
            best = torch.where(fooled.view(-1, *[1] * (x.dim() - 1)), best, fresh)
        return best

    def _once(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        """One run of the attack from one (random) start."""
        eps, alpha = self.epsilon / self.std, self.step_size / self.std
        low, high = self.bounds
        lower, upper = (x - eps).clamp(low, high), (x + eps).clamp(low, high)
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = x + (2 * noise - 1) * eps
        else:
            x_adv = x.clone()
        x_adv = torch.max(torch.min(x_adv, upper), lower)
        loss_fn = attack_loss(self.loss)
        target = target.detach()
        with eval_mode(model), torch.enable_grad():
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                loss = loss_fn(model(x_adv), target)
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = x_adv.detach() + alpha * grad.sign()
                x_adv = torch.max(torch.min(x_adv, upper), lower)  # project onto the ball ∩ valid range
        return x_adv.detach()


class LogitScale(nn.Module):
    """``model(x) · scale``: a fixed temperature (scale = 1/τ) that travels with the exported model."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        if _number("scale", scale) <= 0:
            raise ConfigError("scale", "a logit scale > 0", scale)
        self.model = model
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's logits times ``scale``."""
        return self.model(x) * self.scale

    def extra_repr(self) -> str:
        """Show the scale in ``print(module)``."""
        return f"scale={self.scale:g}"


def correct_under(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], attack: PGD | None = None,
                  attack_model: nn.Module | None = None, seed: int = 0) -> torch.Tensor:
    """Per-sample correctness (bool ``[N]``) of ``model`` on clean or attacked inputs.

    ``attack`` (None: clean) is run against ``attack_model`` (default ``model``): a different logit
    scale of the same model, or another model for a transfer attack. Its random start is seeded.
    """
    hits = []
    generator: torch.Generator | None = None
    with eval_mode(model):
        for batch in batches:
            x, y = batch["input"], batch["label"]
            if attack is not None:
                if generator is None:
                    generator = torch.Generator(device=x.device).manual_seed(seed)
                x = attack(attack_model if attack_model is not None else model, x, y, generator=generator)
            with torch.no_grad():
                hits.append((model(x).argmax(-1) == y).cpu())
    return torch.cat(hits)


def robust_accuracy(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                    attacks: Mapping[str, tuple[PGD | None, nn.Module | None]], transfer: Iterable[str] = (),
                    seed: int = 0) -> dict[str, float]:
    """Accuracy of ``model`` under each named ``(attack, attack_model)``, plus ``worst`` (per sample).

    ``worst`` counts a sample as correct only if it survives every entry except those named in
    ``transfer`` (attacks built on another model): the per-sample worst case over white-box attacks.
    """
    transfer = set(transfer)
    batches = list(batches)
    results: dict[str, float] = {}
    survived: torch.Tensor | None = None
    for name, (attack, attack_model) in attacks.items():
        hits = correct_under(model, batches, attack, attack_model, seed=seed)
        results[name] = float(hits.float().mean())
        if name not in transfer:
            survived = hits if survived is None else survived & hits
    if survived is not None:
        results["worst"] = float(survived.float().mean())
    return results
