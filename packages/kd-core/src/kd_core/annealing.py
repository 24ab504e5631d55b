"""Annealing-KD: the per-epoch annealed teacher-logit target of phase I, and the method's two phases.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021
(arXiv:2104.07163); reference code in huawei-noah/Efficient-NLP, folder ``Annealing_KD/``.

- Phase I (``E₁`` epochs): ``MSE(z_s, Φ(T)·z_t)`` (PyTorch's mean over batch × classes), no student
  temperature, no KL, no label term. ``Φ(T) = 1 − (T−1)/τ_max``, with the integer "temperature" T stepping
  down from τ_max to 1, one step every ``⌊E₁/τ_max⌋`` epochs. Equivalently the stage ``s = τ_max − T + 1``
  runs 1..τ_max and ``Φ = s/τ_max``: 1/τ_max, 2/τ_max, ..., 1.
- Phase II (``E₂`` epochs): cross-entropy on the labels with a fresh optimizer, starting from the best
  phase-I student by validation accuracy (``Phase(restore_best=True)`` on phase I).

Where the paper and its code leave room, this module decides, and says so:

- Remainder: the reference code raises T every ``int(E₁/τ_max)`` epochs without a cap, so when ``E₁`` is
  not a multiple of τ_max its last epochs regress onto teacher logits scaled by Φ > 1 (E₁ = 15,
  τ_max = 10 ends at Φ = 1.5). The paper defines Φ(T) only for T ≥ 1, i.e. Φ ≤ 1. Here the stage is
  capped at τ_max: the **last** stage (Φ = 1, raw teacher logits) absorbs the remainder epochs.
- ``E₁ < τ_max`` makes the step length ``⌊E₁/τ_max⌋`` zero; the reference code asserts ``E₁ ≥ τ_max`` and
  so does this module (``ConfigError`` naming ``epochs``) instead of stepping within an epoch.
- The stage is constant over an epoch (the paper steps per epoch); ``kd_core.schedules.Annealing`` instead
  cuts the phase's continuous progress into τ_max equal slices, which agrees with this schedule only when
  ``E₁`` is a multiple of τ_max.
- "MSE without annealing" (the control a third-party replication asks for) is the same two phases with
  Φ ≡ 1 (``anneal=False``); τ_max = 1 gives the same phase I.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kd_core.engine import OptimizerFactory, Phase, SchedulerFactory, adamw
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, logit_mse
from kd_core.objective import Objective, Term
from kd_core.taps import LOGITS

__all__ = ["ARMS", "AnnealedScale", "AnnealingSettings", "annealed_mse_term", "annealing_arms", "annealing_compare",
           "annealing_phases", "check_tau_max", "phi"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_tau_max(tau_max: object) -> int:
    """Return ``tau_max`` as an int, or raise ``ConfigError`` naming ``tau_max`` unless it is an integer ≥ 1."""
    if not _is_int(tau_max) or int(tau_max) < 1:  # type: ignore[call-overload]
        raise ConfigError("tau_max", "an integer ≥ 1 (the largest annealing temperature τ_max)", tau_max)
    return int(tau_max)  # type: ignore[call-overload]


def phi(temperature: float, tau_max: int) -> float:
    """Φ(T) = 1 − (T − 1)/τ_max, the factor on the teacher's logits at annealing temperature T ∈ [1, τ_max]."""
    tau = check_tau_max(tau_max)
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 1 <= temperature <= tau:
        raise ConfigError("temperature", f"a number in [1, τ_max = {tau}]", temperature)
    return 1.0 - (float(temperature) - 1.0) / tau


@dataclass(frozen=True)
class AnnealedScale:
    """Φ as a schedule over phase I's progress: constant within an epoch, one step every ⌊E₁/τ_max⌋ epochs.

    ``progress`` is what ``Distiller`` passes, ``(epoch + batch/n)/E₁``. The stage of epoch ``e`` (0-based)
    is ``min(e // ⌊E₁/τ_max⌋ + 1, τ_max)``, T = τ_max − stage + 1 and Φ = stage/τ_max = Φ(T).
    """

    tau_max: int
    epochs: int

    def __post_init__(self) -> None:
        tau = check_tau_max(self.tau_max)
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ConfigError("epochs", "an integer ≥ 1 (phase I's epochs)", self.epochs)
        if self.epochs < tau:
            raise ConfigError("epochs", f"phase I epochs ≥ tau_max = {tau} (one epoch per temperature at least)",
                              self.epochs, hint="lower tau_max or train phase I longer")

    @property
    def epochs_per_stage(self) -> int:
        """⌊E₁/τ_max⌋: how many epochs each temperature lasts (the last one also takes the remainder)."""
        return self.epochs // self.tau_max

    def epoch(self, progress: float) -> int:
        """The 0-based epoch of phase I at ``progress`` (clipped to the phase)."""
        p = min(max(float(progress), 0.0), 1.0)
        return min(int(p * self.epochs + 1e-9), self.epochs - 1)

    def stage(self, progress: float) -> int:
        """The stage s ∈ 1..τ_max at ``progress`` (s = τ_max − T + 1)."""
        return min(self.epoch(progress) // self.epochs_per_stage + 1, self.tau_max)

    def temperature(self, progress: float) -> int:
        """The annealing temperature T ∈ τ_max..1 at ``progress``."""
        return self.tau_max - self.stage(progress) + 1

    def __call__(self, progress: float) -> float:
        """Φ(T) at ``progress``."""
        return self.stage(progress) / self.tau_max

    def temperatures(self) -> list[int]:
        """T for each epoch of phase I, in order."""
        return [self.temperature((e + 0.5) / self.epochs) for e in range(self.epochs)]

    def values(self) -> list[float]:
        """Φ for each epoch of phase I, in order."""
        return [self((e + 0.5) / self.epochs) for e in range(self.epochs)]


def annealed_mse_term(tau_max: int, epochs: int, anneal: bool = True, name: str = "mse",
                      student: str = LOGITS, teacher: str = LOGITS) -> Term:
    """Phase I's term: ``logit_mse(z_s, Φ·z_t)`` with Φ an ``AnnealedScale`` (or Φ ≡ 1 when not ``anneal``)."""
    if anneal:
        return Term(name, logit_mse, student=student, teacher=teacher, scale=AnnealedScale(tau_max, epochs))
    check_tau_max(tau_max)
    return Term(name, logit_mse, student=student, teacher=teacher, scale=1.0)


def annealing_phases(tau_max: int, phase1_epochs: int, phase2_epochs: int, *, anneal: bool = True,
                     phase1_optimizer: OptimizerFactory | None = None,
                     phase2_optimizer: OptimizerFactory | None = None,
                     scheduler: SchedulerFactory | None = None,
                     phase2_loss: Callable[..., torch.Tensor] = cross_entropy) -> list[Phase]:
    """The two phases: ``phase1`` (annealed logit MSE, best student restored at its end) and ``phase2``.

    Phase II regresses nothing from the teacher: ``phase2_loss`` (cross-entropy, or e.g. an MSE for
    regression targets) against the batch's ``label``, with its own fresh optimizer. ``anneal=False`` is
    the "MSE without annealing" control (Φ ≡ 1). Every argument is checked here, before any training.
    """
    check_tau_max(tau_max)
    mse = annealed_mse_term(tau_max, phase1_epochs, anneal=anneal)
    return [
        Phase("phase1", Objective(mse), epochs=phase1_epochs, optimizer=phase1_optimizer or adamw(),
              scheduler=scheduler, restore_best=True),
        Phase("phase2", Objective(Term("ce", phase2_loss, target="label")), epochs=phase2_epochs,
              optimizer=phase2_optimizer or adamw(), scheduler=scheduler),
    ]


# -- the method's arms, shared by every domain ---------------------------------------------------------------

#: Every Annealing-KD study arm: the method, its "MSE without annealing" control, vanilla KD and scratch.
ARMS = ("annealing-kd", "mse-kd", "hinton-kd", "scratch")
DESCRIPTIONS = {"annealing-kd": "phase I MSE(z_s, Φ(T)·z_t), T = τ_max..1; phase II CE",
                "mse-kd": "the same two phases with Φ ≡ 1", "hinton-kd": "α·T²·KL + (1 − α)·CE",
                "scratch": "cross-entropy on the labels alone"}


@dataclass(frozen=True)
class AnnealingSettings:
    """What every arm's phases need: τ_max, the phase lengths (vanilla KD and scratch train E₁ + E₂), AdamW
    settings (phase II's own learning rate, default ``lr``), and vanilla KD's temperature and α."""

    tau_max: int
    phase1_epochs: int
    phase2_epochs: int
    lr: float
    weight_decay: float = 0.0
    phase2_lr: float | None = None
    temperature: float = 4.0
    alpha: float = 0.9

    def phases(self, arm: str) -> list[Phase]:
        """The phases of ``arm`` (one of ``ARMS``), each restarting AdamW with cosine decay."""
        from kd_core.engine import cosine_lr
        from kd_core.objective import hinton_objective
        from kd_core.study import TrainSpec, supervised_phases

        if arm in ("annealing-kd", "mse-kd"):
            return annealing_phases(self.tau_max, self.phase1_epochs, self.phase2_epochs, anneal=arm == "annealing-kd",
                                    phase1_optimizer=adamw(self.lr, self.weight_decay),
                                    phase2_optimizer=adamw(self.phase2_lr or self.lr, self.weight_decay),
                                    scheduler=cosine_lr)
        if arm not in ARMS:
            raise ConfigError("arms", f"names among {list(ARMS)}", arm)
        budget = TrainSpec(epochs=self.phase1_epochs + self.phase2_epochs, lr=self.lr, weight_decay=self.weight_decay)
        return (budget.phases(hinton_objective(self.temperature, self.alpha)) if arm == "hinton-kd"
                else supervised_phases(budget))

    def notes(self) -> str:
        """The schedule behind the numbers, for reports."""
        text = (f"Annealing: τ_max = {self.tau_max}; phase I {self.phase1_epochs} epochs of MSE(z_s, Φ(T)·z_t), the "
                f"best phase-I student (validation accuracy) restored; phase II {self.phase2_epochs} epochs of CE "
                f"with a fresh AdamW (lr {self.phase2_lr or self.lr}). MSE-KD: the same with Φ ≡ 1. Vanilla KD "
                f"(hinton-kd): T = {self.temperature}, α = {self.alpha}; it and scratch train "
                f"{self.phase1_epochs + self.phase2_epochs} epochs.")
        if self.phase1_epochs >= self.tau_max:  # (an MSE-KD-only study may have fewer: nothing is annealed)
            scale = AnnealedScale(self.tau_max, self.phase1_epochs)
            text += (f" T per phase-I epoch: {scale.temperatures()}; Φ(T) = 1 − (T−1)/τ_max: "
                     f"{[round(v, 3) for v in scale.values()]}.")
        return text


def annealing_arms(settings: AnnealingSettings, names: Sequence[str], method: str = "annealing-kd", *,
                   batch_size: int, signal: Callable[..., Any] | None = None,
                   distiller: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``Arm``s ``names`` of an Annealing-KD study: ``method``'s own arm is the variant, the other two-phase
    arm a baseline, vanilla KD the ``kd`` arm; every arm but scratch distils through ``signal`` (a factory,
    e.g. ``kd_core.study.cached_teacher()``). Phase settings are checked here, before any training."""
    from kd_core.study import Arm

    roles = {"hinton-kd": "kd", "scratch": "scratch"}
    built = {}
    for name in names:
        settings.phases(name)
        built[name] = Arm(lambda name=name: settings.phases(name), batch_size=batch_size,
                          role=roles.get(name, "variant" if name == method else "baseline"),
                          signal=None if name == "scratch" else signal, distiller=dict(distiller or {}),
                          description=DESCRIPTIONS[name])
    return built


def annealing_compare(method: str, arms: Sequence[str]) -> list[tuple[str, str]]:
    """Vanilla KD against scratch, then the method's arm against vanilla KD, scratch and the other two-phase
    arm, and that arm against vanilla KD (the pairs whose arms are present)."""
    other = "mse-kd" if method == "annealing-kd" else "annealing-kd"
    pairs = [("hinton-kd", "scratch"), (method, "hinton-kd"), (method, "scratch"), (method, other),
             (other, "hinton-kd")]
    return [(a, b) for a, b in pairs if a in arms and b in arms]
