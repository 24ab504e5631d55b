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

from kd_core.annealing import AnnealedScale, annealing_phases
from kd_core.engine import Phase, adamw, cosine_lr
from kd_core.recipes import Method, RunContext
from kd_core.signals import CachedTeacher, FrozenTeacher
from kd_core.study import Arm, TrainSpec, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field, model_validator

from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.tasks import VisionData, vision_task

ArmName = Literal["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
ROLES = {"hinton-kd": "kd", "scratch": "scratch"}


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


def student_phases(config: AnnealingConfig, arm: str) -> list[Phase]:
    """The phases one arm trains through (checked when the arms are built, before any training)."""
    s, a = config.student, config.annealing
    if arm in ("annealing-kd", "mse-kd"):
        return annealing_phases(a.tau_max, a.phase1_epochs, a.phase2_epochs, anneal=arm == "annealing-kd",
                                phase1_optimizer=adamw(s.lr, s.weight_decay),
                                phase2_optimizer=adamw(s.phase2_lr or s.lr, s.weight_decay), scheduler=cosine_lr)
    train: TrainSpec = config.student_train().train_spec()
    return train.phases(distill_objective(config.kd)) if arm == "hinton-kd" else supervised_phases(train)


def arms(config: AnnealingConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists; the method's own is the variant, vanilla KD the ``kd`` arm."""
    def cached(teacher, workdir: Path) -> CachedTeacher | FrozenTeacher:
        frozen = FrozenTeacher(teacher)
        return CachedTeacher(frozen, workdir / "teacher-outputs") if config.cache_teacher_outputs else frozen

    built = {}
    for name in config.arms:
        student_phases(config, name)  # bad phase settings fail here, before anything is trained
        role = ROLES.get(name, "variant" if name == config.method else "baseline")
        built[name] = Arm(lambda name=name: student_phases(config, name), role=role,
                          signal=None if name == "scratch" else cached, batch_size=config.student.batch_size,
                          distiller={"clip_grad_norm": config.clip_grad_norm})
    return built


def compare(config: AnnealingConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Vanilla KD against scratch, then the method's arm against vanilla KD, scratch and the other control."""
    pairs = [("hinton-kd", "scratch")] if {"hinton-kd", "scratch"} <= set(arms) else []
    own, other = config.method, "mse-kd" if config.method == "annealing-kd" else "annealing-kd"
    return pairs + [(own, b) for b in ("hinton-kd", "scratch", other) if b in arms]


def task(config: AnnealingConfig, context: RunContext) -> Task:
    """The vision task the recipe's ``data``, ``teacher`` and ``student`` fields name."""
    return vision_task(config.data, config.teacher, config.student_train(), context)


def notes(config: AnnealingConfig, task: Task) -> str:
    """The schedule and settings behind the numbers."""
    a, s, kd = config.annealing, config.student, config.kd
    text = (f"Annealing: τ_max = {a.tau_max}; phase I {a.phase1_epochs} epochs of MSE(z_s, Φ(T)·z_t), the best "
            f"phase-I student (validation accuracy) restored; phase II {a.phase2_epochs} epochs of CE with a fresh "
            f"AdamW (lr {s.phase2_lr or s.lr}). MSE-KD: the same with Φ ≡ 1. Vanilla KD (hinton-kd): "
            f"T = {kd.temperature}, α = {kd.alpha}; it and scratch train {a.budget} epochs. Student {s.model}, AdamW "
            f"lr {s.lr}, cosine decay in each phase, batch {s.batch_size}.")
    if "annealing-kd" in config.arms:
        scale = AnnealedScale(a.tau_max, a.phase1_epochs)
        text += (f" T per phase-I epoch: {scale.temperatures()}; Φ(T) = 1 − (T−1)/τ_max: "
                 f"{[round(v, 3) for v in scale.values()]}.")
    return text


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
