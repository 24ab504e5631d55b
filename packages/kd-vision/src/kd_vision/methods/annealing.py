"""Annealing-KD on real digits, with the "MSE without annealing" control, vanilla KD, TAKD and a scratch twin.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163).
The losses, the per-epoch Φ(T) schedule and the two phases live in ``kd_core.annealing``; the TAKD arm in
``kd_vision.methods.takd``; this module is the method's config and arms. It runs on any vision task (real
digits by default; see ``kd_vision.tasks``); teacher, student and assistant may also be ``mlp-<widths>``
(``kd_vision.models.mlp``).

Arms, each from the same student initialisation and data order per seed and with the same epoch budget E₁ + E₂:

- ``annealing-kd``: phase I ``MSE(z_s, Φ(T)·z_t)``, T = τ_max..1, for E₁ epochs; the best phase-I student
  (validation accuracy) is restored; phase II cross-entropy on labels for E₂ epochs with a fresh optimizer;
- ``mse-kd``: the same with Φ ≡ 1 (a third-party replication found plain logit MSE as good as annealing);
- ``hinton-kd``: α·T²·KL + (1 − α)·CE for E₁ + E₂ epochs; ``scratch``: CE alone for E₁ + E₂ epochs;
- ``takd`` (Mirzadeh et al., AAAI 2020, arXiv:1902.03393, the paper's other baseline): the same Hinton KD, from
  a teacher assistant of intermediate size that was distilled (Hinton KD) from the teacher once per study.

One best-checkpoint rule for every arm (``best_checkpoint``, on by default): at the end of its **last** phase
each student (and TAKD's assistant) is restored to its epoch of best validation accuracy (the first such epoch
on a tie), and that student is the one scored on the test split. Annealing-KD keeps its own phase-I restore
on top (the method's step), so its last phase starts from the best phase-I student.

Deviations from the paper, on purpose: AdamW with cosine decay restarted in each phase (the paper's CIFAR
code uses SGD 0.1 with ×0.1 steps at ½ and ¾ of each phase); best checkpoints are chosen on a real validation
split, not the test set (the reference code reports the best test accuracy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.annealing import AnnealingSettings, annealing_arms, annealing_compare
from kd_core.engine import Phase
from kd_core.errors import ConfigError
from kd_core.recipes import Method, RunContext
from kd_core.specs import load_weights_into
from kd_core.study import Arm, TrainSpec, cached_teacher
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Splits, Task
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Subset

from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.methods.takd import TeacherAssistant, assistant_section, takd_arm
from kd_vision.models.mlp import build_mlp, is_mlp_spec
from kd_vision.tasks import VisionData, build_vision_model, vision_task

ArmName = Literal["annealing-kd", "mse-kd", "hinton-kd", "takd", "scratch"]
#: The pairs the TAKD arm adds to ``kd_core.annealing.annealing_compare``'s (the method's arm against TAKD first).
TAKD_PAIRS = (("takd", "hinton-kd"),)


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
    """τ_max and the two phases' lengths; the other arms train for ``phase1_epochs + phase2_epochs``."""

    tau_max: Annotated[int, Field(ge=1)] = 10
    phase1_epochs: Annotated[int, Field(gt=0)] = 20
    phase2_epochs: Annotated[int, Field(gt=0)] = 10

    @property
    def budget(self) -> int:
        """Epochs of every arm: E₁ + E₂."""
        return self.phase1_epochs + self.phase2_epochs


class AssistantConfig(TrainConfig):
    """TAKD's teacher assistant: its model spec and how it is distilled from the teacher (every field defaults)."""

    model: str = "mlp-128"
    epochs: Annotated[int, Field(gt=0)] = 30
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(gt=0)] = 32


class AnnealingConfig(StudyRecipe):
    """The ``annealing-kd`` and ``mse-kd`` recipes (the method names the arm under test).

    ``cache_teacher_outputs`` runs the frozen teacher once over the students' train split and serves its
    logits from disk to every arm and seed (exact: the inputs are not augmented). ``assistant``: TAKD's
    teacher assistant (model and how it is distilled from the teacher on the teacher's pool, with ``kd``'s T
    and α). ``best_checkpoint``: every arm's student is its best-validation-accuracy epoch of its last phase
    (False: its last epoch). ``disjoint_teacher_pool``: the teacher (and the assistant) learn only the pool
    samples that are not the students' train split, so that what they say about the students' samples are
    held-out predictions, not memorised labels (the spec's warning about teachers that memorised the train set).
    """

    method: Literal["annealing-kd", "mse-kd"] = "annealing-kd"
    data: VisionData = VisionData()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: StudentConfig = StudentConfig()
    assistant: AssistantConfig = AssistantConfig()
    annealing: AnnealingSection = AnnealingSection()
    kd: KDConfig = KDConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["annealing-kd", "mse-kd", "hinton-kd", "takd", "scratch"])
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = None
    cache_teacher_outputs: bool = True
    best_checkpoint: bool = True
    disjoint_teacher_pool: bool = False

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
    """The phases' settings of the arms ``kd_core.annealing`` builds (all but TAKD)."""
    s, a = config.student, config.annealing
    return AnnealingSettings(a.tau_max, a.phase1_epochs, a.phase2_epochs, lr=s.lr, weight_decay=s.weight_decay,
                             phase2_lr=s.phase2_lr, temperature=config.kd.temperature, alpha=config.kd.alpha)


def best_checkpoint(phases: list[Phase]) -> list[Phase]:
    """``phases`` with the last one restoring its best-validation epoch when it ends (the uniform rule)."""
    return [*phases[:-1], dataclasses.replace(phases[-1], restore_best=True)]


def student_phases(config: AnnealingConfig, arm: str) -> list[Phase]:
    """The phases one arm's student trains through (TAKD's student: vanilla KD's, from the assistant)."""
    phases = settings(config).phases("hinton-kd" if arm == "takd" else arm)
    return best_checkpoint(phases) if config.best_checkpoint else phases


def assistant_phases(config: AnnealingConfig) -> list[Phase]:
    """How TAKD's assistant is distilled from the teacher: Hinton KD with ``kd``'s T and α, ``assistant``'s
    epochs and AdamW settings, under the same best-checkpoint rule as the students."""
    a = config.assistant
    phases = TrainSpec(epochs=a.epochs, lr=a.lr, weight_decay=a.weight_decay).phases(distill_objective(config.kd))
    return best_checkpoint(phases) if config.best_checkpoint else phases


def assistant(config: AnnealingConfig, task: Task | None) -> TeacherAssistant:
    """TAKD's assistant for ``task`` (built by the task's ``extras["build"]`` when first trained), cached by what
    determines it."""
    spec = config.assistant
    return TeacherAssistant(spec.model, lambda: task.extras["build"](spec, "assistant"),
                            lambda: assistant_phases(config), spec.batch_size,
                            determinants={"assistant_training": spec.model_dump(), "kd": config.kd.model_dump(),
                                          "teacher_training": config.teacher.model_dump(),
                                          "best_checkpoint": config.best_checkpoint},
                            reuse=config.reuse_teacher)


def check_assistant(config: AnnealingConfig, task: Task) -> None:
    """Refuse, before any run directory, an assistant spec that does not build or whose logits do not cover the
    task's classes (the assistant itself is trained only when the TAKD arm first runs)."""
    model = task.extras["build"](config.assistant, "assistant").eval()
    with torch.no_grad():
        try:
            outputs = task.forward(model, task.example_batch(2))
        except Exception as err:  # the model not fitting the data, said in one line
            raise ConfigError("assistant.model", "a model that accepts this task's inputs",
                              f"{config.assistant.model}: {type(err).__name__}: {err}") from None
    classes = len(task.class_names or [])
    if classes and outputs.shape[-1] != classes:
        raise ConfigError("assistant.model", f"logits over the data's {classes} classes",
                          f"{config.assistant.model}: {outputs.shape[-1]} outputs")


def arms(config: AnnealingConfig, task: Task | None) -> dict[str, Arm]:
    """Every arm the recipe lists: the method's own is the variant, vanilla KD the ``kd`` arm, the rest
    baselines; the teacher's logits are cached for every arm and seed when ``cache_teacher_outputs``; every arm
    follows the best-checkpoint rule. With a task, TAKD's assistant spec is checked here."""
    if task is not None and "takd" in config.arms:
        check_assistant(config, task)
    s = config.student
    options = {"clip_grad_norm": config.clip_grad_norm}
    names = [n for n in config.arms if n != "takd"]
    built = annealing_arms(settings(config), names, config.method, batch_size=s.batch_size,
                           signal=cached_teacher() if config.cache_teacher_outputs else None, distiller=options)
    built = {name: dataclasses.replace(arm, phases=lambda name=name: student_phases(config, name))
             for name, arm in built.items()}
    if "takd" in config.arms:
        kd = f"α·T²·KL + (1 − α)·CE from a {config.assistant.model} assistant distilled from the teacher"
        built["takd"] = takd_arm(assistant(config, task), lambda: student_phases(config, "takd"),
                                 batch_size=s.batch_size, description=kd, distiller=options)
    return {name: built[name] for name in config.arms}


def compare(config: AnnealingConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Vanilla KD against scratch, then the method's arm against vanilla KD, scratch, the other control and
    TAKD, then the controls against vanilla KD."""
    pairs = annealing_compare(config.method, list(arms))
    pairs += [p for p in ((config.method, "takd"), *TAKD_PAIRS) if p[0] in arms and p[1] in arms]
    return list(dict.fromkeys(pairs))


def _model_builder(base: Task, context: RunContext | None) -> Callable[[TrainConfig, str], nn.Module]:
    """``build(spec, role)``: the model ``spec`` names for ``base``'s data, ``mlp-<widths>`` included; errors name
    ``<role>.model`` / ``<role>.weights``."""
    shape = tuple(base.example_input().shape[1:])
    classes = len(base.class_names or range(10))
    trust = tuple(getattr(context, "trust", ()) or ())

    def build(spec: TrainConfig, role: str) -> nn.Module:
        if not is_mlp_spec(spec.model):
            return build_vision_model(spec, role, classes, int(shape[0]) if len(shape) == 3 else 1, trust)
        model = build_mlp(spec.model, shape, classes, f"{role}.model")
        return load_weights_into(model, spec.weights, f"{role}.weights") if spec.weights else model

    return build


def held_out_pool(splits: Splits) -> Splits:
    """``splits`` with the teacher's pool cut to the samples after the students' train split (which is the pool's
    first ``len(train)`` samples); ``ConfigError`` naming ``data.teacher_train_size`` when nothing is left."""
    pool, n = splits.teacher_pool, len(splits.train)  # type: ignore[arg-type]
    if splits.teacher_train is None or len(pool) <= n:  # type: ignore[arg-type]
        raise ConfigError("data.teacher_train_size", f"more samples than data.train_size ({n}) when "
                          "disjoint_teacher_pool is set", len(pool))  # type: ignore[arg-type]
    return dataclasses.replace(splits, teacher_train=Subset(pool, range(n, len(pool))))  # type: ignore[arg-type]


def task(config: AnnealingConfig, context: RunContext) -> Task:
    """The vision task the recipe's ``data``, ``teacher`` and ``student`` fields name; ``extras["build"](spec,
    role)`` builds any model spec (TAKD's assistant)."""
    base = vision_task(config.data, config.teacher, config.student_train(), context)
    if config.disjoint_teacher_pool:
        splits = held_out_pool(base.data)
        base = dataclasses.replace(base, splits=lambda: splits, key={**base.key, "teacher_pool_disjoint": True})
    build = _model_builder(base, context)
    student_spec = config.student_train()

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build(student_spec, "student")

    return dataclasses.replace(base, teacher=lambda: build(config.teacher, "teacher"), student=student,
                               extras={**base.extras, "build": build})


def notes(config: AnnealingConfig, task: Task) -> str:
    """The schedule, the settings and the best-checkpoint rule behind the numbers."""
    s, a = config.student, config.assistant
    rule = ("Best-checkpoint rule, the same for every arm: each student is restored, at the end of its last "
            "phase, to its epoch of best validation accuracy, and that student is scored on the test split (the "
            "'last epoch' above does not apply)." if config.best_checkpoint else
            "Every student is its last epoch.")
    text = (f"{settings(config).notes()} Student {s.model}, AdamW lr {s.lr}, cosine decay in each phase, batch "
            f"{s.batch_size}. {rule}")
    if "takd" in config.arms:
        text += (f" TAKD: a {a.model} assistant distilled from the teacher with the same T and α on the teacher's "
                 f"pool ({a.epochs} epochs, AdamW lr {a.lr}, batch {a.batch_size}, seed 0, best validation epoch "
                 f"restored), then each student distilled from it exactly as hinton-kd is from the teacher.")
    return text


def sections(config: AnnealingConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The report's TAKD assistant section (when the study ran the TAKD arm)."""
    return assistant_section(run, results.get("task", {}).get("headline", "accuracy"))


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _method(name: str, summary: str) -> Method:
    return study_method(name, AnnealingConfig, task=task, arms=arms, compare=compare, notes=notes, sections=sections,
                        teacher_training=lambda c: c.teacher.train_spec(),
                        title=lambda c, t: f"Annealing-KD vs MSE-KD vs vanilla KD vs TAKD vs scratch on "
                                           f"{t.description}",
                        domain="vision", recipes=_RECIPES, summary=summary)


METHOD = _method("annealing-kd", "Annealing-KD (Jafari et al. 2021): Φ(T)-annealed logit MSE, then CE; vs MSE-KD, "
                                 "KD, TAKD, scratch")
MSE_METHOD = _method("mse-kd", "Annealing-KD's control: logit MSE without annealing (Φ ≡ 1), then CE; vs KD, "
                               "scratch")
