"""Annealing-KD for text classification: a fine-tuned teacher -> a small BERT, on any text task.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163);
reference code in huawei-noah/Efficient-NLP, ``Annealing_KD/``. The losses, the per-epoch Φ(T) schedule and the
two phases live in ``kd_core.annealing``; this module is the method's config and arms (the WordNet gloss task
and MiniLM-L6 by default; any ``data.source``, ``teacher.model`` and ``student.model`` of ``kd_nlu.tasks``).

Arms, each from the same student initialisation per seed and with the same epoch budget E₁ + E₂:

- ``annealing-kd`` (variant): phase I ``MSE(z_s, Φ(T)·z_t)``, T = τ_max..1, the best phase-I student (validation
  accuracy) restored; phase II cross-entropy on the labels with a fresh AdamW;
- ``mse-kd`` (baseline): the same with Φ ≡ 1, the control a third-party replication asks for;
- ``hinton-kd`` (kd): α·τ²·KL + (1 − α)·CE; ``scratch``: CE alone.

The paper's GLUE setting is τ_max = 7, E₁ = 14, E₂ = 4 with AdamW and linear decay; the default recipe halves
the epochs for a CPU and uses cosine decay restarted in each phase. The teacher's logits are computed once and
served to every arm and seed from a ``CachedTeacher``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from kd_core.annealing import AnnealingSettings, annealing_arms, annealing_compare
from kd_core.engine import Phase
from kd_core.study import Arm, cached_teacher
from kd_core.study_recipe import StudyRecipe
from kd_core.task import Task
from pydantic import Field, model_validator

from kd_nlu.methods.common import KDSection, Strict, text_method
from kd_nlu.tasks import TextData, TextModel

ArmName = Literal["annealing-kd", "mse-kd", "hinton-kd", "scratch"]


class AnnealingSection(Strict):
    """τ_max and the two phases' lengths (E₁ ≥ τ_max); phase II's learning rate (default: the student's)."""

    tau_max: Annotated[int, Field(ge=1)] = 7
    phase1_epochs: Annotated[int, Field(gt=0)] = 7
    phase2_epochs: Annotated[int, Field(gt=0)] = 3
    phase2_lr: Annotated[float, Field(gt=0)] | None = None

    @property
    def budget(self) -> int:
        """Epochs of every arm: E₁ + E₂."""
        return self.phase1_epochs + self.phase2_epochs


class AnnealingStudent(Strict):
    """The student (a ``kd_nlu.tasks`` model spec and shape) and its AdamW settings; every arm trains
    ``annealing.phase1_epochs + phase2_epochs`` epochs."""

    model: str = "small"
    layers: Annotated[int, Field(gt=0)] = 2
    hidden: Annotated[int, Field(gt=0)] = 192
    intermediate: Annotated[int, Field(gt=0)] = 768
    lr: Annotated[float, Field(gt=0)] = 5e-4
    batch_size: Annotated[int, Field(gt=0)] = 32
    weight_decay: Annotated[float, Field(ge=0)] = 0.01

    def text_model(self, epochs: int = 1) -> TextModel:
        """The student as a ``TextModel`` trained for ``epochs``."""
        return TextModel(epochs=epochs, **self.model_dump())


class AnnealingTextConfig(StudyRecipe):
    """The kd-nlu ``annealing-kd`` recipe."""

    method: Literal["annealing-kd"] = "annealing-kd"
    data: TextData = TextData(max_length=32)
    teacher: TextModel = TextModel(model="minilm", epochs=3, lr=1e-4)
    student: AnnealingStudent = AnnealingStudent()
    annealing: AnnealingSection = AnnealingSection()
    kd: KDSection = KDSection()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["annealing-kd", "mse-kd", "hinton-kd", "scratch"])
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0
    cache_teacher_outputs: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> AnnealingTextConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        a = self.annealing
        if "annealing-kd" in self.arms and a.phase1_epochs < a.tau_max:
            raise ValueError(f"annealing.phase1_epochs must be at least annealing.tau_max ({a.tau_max}), "
                             f"received {a.phase1_epochs}")
        return self


def settings(config: AnnealingTextConfig) -> AnnealingSettings:
    """The phases' settings of every arm (``kd_core.annealing``)."""
    s, a = config.student, config.annealing
    return AnnealingSettings(a.tau_max, a.phase1_epochs, a.phase2_epochs, lr=s.lr, weight_decay=s.weight_decay,
                             phase2_lr=a.phase2_lr, temperature=config.kd.temperature, alpha=config.kd.alpha)


def arm_phases(config: AnnealingTextConfig, arm: str) -> list[Phase]:
    """The phases of one arm."""
    return settings(config).phases(arm)


def arms(config: AnnealingTextConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists, each through its own phases; the teachers' logits cached when asked."""
    return annealing_arms(settings(config), config.arms, batch_size=config.student.batch_size,
                          signal=cached_teacher() if config.cache_teacher_outputs else None,
                          distiller={"clip_grad_norm": config.clip_grad_norm})


def compare(config: AnnealingTextConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Vanilla KD against scratch, then annealing-KD against vanilla KD, scratch and MSE-KD."""
    return annealing_compare("annealing-kd", list(arms))


def notes(config: AnnealingTextConfig, task: Task) -> str:
    """The schedule and settings behind the numbers."""
    s, t = config.student, config.teacher
    return (f"{settings(config).notes()} Student {s.model} ({s.layers} layers, hidden {s.hidden}), AdamW lr {s.lr}, "
            f"cosine decay in each phase, batch {s.batch_size}, gradient clipping {config.clip_grad_norm}. Teacher "
            f"{t.model}: {t.epochs} epochs at lr {t.lr} unless it came trained.")


METHOD = text_method("annealing-kd", AnnealingTextConfig, arms=arms, compare=compare, notes=notes,
                     title=lambda c, t: f"Annealing-KD vs MSE-KD vs vanilla KD vs scratch on {t.description}",
                     summary="Annealing-KD: annealed logit MSE then CE (MiniLM -> small BERT on glosses, or your "
                             "texts and models); vs MSE-KD, KD, scratch")
