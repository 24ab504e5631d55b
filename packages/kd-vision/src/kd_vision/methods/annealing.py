"""Annealing-KD on real digits, with the "MSE without annealing" control, vanilla KD and a scratch twin.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163).
The losses, the per-epoch Φ(T) schedule and the two phases live in ``kd_core.annealing``; this module is
the method's config and arms. It runs on any vision task (real digits by default; see ``kd_vision.tasks``).

Arms, each from the same student initialisation per seed and with the same epoch budget E₁ + E₂:

- ``annealing-kd``: phase I ``MSE(z_s, Φ(T)·z_t)``, T = τ_max..1, for E₁ epochs; the best phase-I student
  (validation accuracy) is restored; phase II cross-entropy on labels for E₂ epochs with a fresh optimizer;
- ``mse-kd``: the same with Φ ≡ 1 (a third-party replication found plain logit MSE as good as annealing);
- ``hinton-kd``: α·T²·KL + (1 − α)·CE for E₁ + E₂ epochs; ``scratch``: CE alone for E₁ + E₂ epochs.

Deviations from the paper, on purpose: AdamW with cosine decay restarted in each phase (the paper's CIFAR
code uses SGD 0.1 with ×0.1 steps at ½ and ¾ of each phase); the reported student of every arm is its last
epoch (the reference code reports the best test accuracy); best phase-I checkpoints are chosen on a
real validation split, not the test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from kd_core.annealing import AnnealingSettings, annealing_arms, annealing_compare
from kd_core.engine import Phase
from kd_core.recipes import Method, RunContext
from kd_core.study import Arm, cached_teacher
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field, model_validator

from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.hinton import KDConfig
from kd_vision.tasks import VisionData, vision_task

ArmName = Literal["annealing-kd", "mse-kd", "hinton-kd", "scratch"]


class StudentConfig(Strict):
    """The student: a model spec, optional weights, AdamW settings, and phase II's own learning rate (default
    ``lr``)."""

    model: str = "student-cnn"
    weights: str | None = None
    lr: Annotated[float, Field(gt=0)] = 1e-2
    phase2_lr: Annotated[float, Field(gt=0)] | None = None
    batch_size: Annotated[int, Field(gt=0)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class AnnealingSection(Strict):
    """τ_max and the two phases' lengths; the KD and scratch arms train for ``phase1_epochs + phase2_epochs``."""

    tau_max: Annotated[int, Field(ge=1)] = 10
    phase1_epochs: Annotated[int, Field(gt=0)] = 20
    phase2_epochs: Annotated[int, Field(gt=0)] = 10

    @property
    def budget(self) -> int:
        """Epochs of every arm: E₁ + E₂."""
        return self.phase1_epochs + self.phase2_epochs


class AnnealingConfig(StudyRecipe):
    """The ``annealing-kd`` and ``mse-kd`` recipes (the method names the arm under test).

    ``cache_teacher_outputs`` runs the frozen teacher once over the students' train split and serves its
    logits from disk to every arm and seed (exact: the inputs are not augmented); the teacher is ~30× the
    student's MACs, so this is most of the run's compute.
    """

    method: Literal["annealing-kd", "mse-kd"] = "annealing-kd"
    data: VisionData = VisionData()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: StudentConfig = StudentConfig()
    annealing: AnnealingSection = AnnealingSection()
    kd: KDConfig = KDConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["annealing-kd", "mse-kd", "hinton-kd", "scratch"])
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = None
    cache_teacher_outputs: bool = True

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> AnnealingConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        a = self.annealing
        if "annealing-kd" in self.arms and a.phase1_epochs < a.tau_max:
            raise ValueError(f"annealing.phase1_epochs must be at least annealing.tau_max ({a.tau_max}): one epoch "
                             f"per temperature, received {a.phase1_epochs}")
        return self

    def student_train(self) -> TrainConfig:
        """The student as a ``TrainConfig`` (model, weights, AdamW settings, the E₁ + E₂ budget)."""
        s = self.student
        return TrainConfig(model=s.model, weights=s.weights, epochs=self.annealing.budget, lr=s.lr,
                           batch_size=s.batch_size, weight_decay=s.weight_decay)


def settings(config: AnnealingConfig) -> AnnealingSettings:
    """The phases' settings of every arm (``kd_core.annealing``)."""
    s, a = config.student, config.annealing
    return AnnealingSettings(a.tau_max, a.phase1_epochs, a.phase2_epochs, lr=s.lr, weight_decay=s.weight_decay,
                             phase2_lr=s.phase2_lr, temperature=config.kd.temperature, alpha=config.kd.alpha)


def student_phases(config: AnnealingConfig, arm: str) -> list[Phase]:
    """The phases one arm trains through."""
    return settings(config).phases(arm)


def arms(config: AnnealingConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists; the method's own is the variant, vanilla KD the ``kd`` arm; the teacher's
    logits are cached for every arm and seed when ``cache_teacher_outputs``."""
    return annealing_arms(settings(config), config.arms, config.method, batch_size=config.student.batch_size,
                          signal=cached_teacher() if config.cache_teacher_outputs else None,
                          distiller={"clip_grad_norm": config.clip_grad_norm})


def compare(config: AnnealingConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Vanilla KD against scratch, then the method's arm against vanilla KD, scratch and the other control."""
    return annealing_compare(config.method, list(arms))


def task(config: AnnealingConfig, context: RunContext) -> Task:
    """The vision task the recipe's ``data``, ``teacher`` and ``student`` fields name."""
    return vision_task(config.data, config.teacher, config.student_train(), context)


def notes(config: AnnealingConfig, task: Task) -> str:
    """The schedule and settings behind the numbers."""
    s = config.student
    return (f"{settings(config).notes()} Student {s.model}, AdamW lr {s.lr}, cosine decay in each phase, batch "
            f"{s.batch_size}.")


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _method(name: str, summary: str) -> Method:
    return study_method(name, AnnealingConfig, task=task, arms=arms, compare=compare, notes=notes,
                        teacher_training=lambda c: c.teacher.train_spec(),
                        title=lambda c, t: f"Annealing-KD vs MSE-KD vs vanilla KD vs scratch on {t.description}",
                        domain="vision", recipes=_RECIPES, summary=summary)


METHOD = _method("annealing-kd", "Annealing-KD (Jafari et al. 2021): Φ(T)-annealed logit MSE, then CE; vs MSE-KD, "
                                 "KD, scratch")
MSE_METHOD = _method("mse-kd", "Annealing-KD's control: logit MSE without annealing (Φ ≡ 1), then CE; vs KD, "
                               "scratch")
