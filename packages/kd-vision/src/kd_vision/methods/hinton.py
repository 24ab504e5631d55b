"""Hinton KD: the toolkit's main job and its smallest complete method.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531 (2015).
The student minimises α·T²·KL(p_t^T ‖ p_s^T) + (1 − α)·CE(y, p_s). Two arms: ``kd`` (that objective)
and ``scratch`` (the same student, same initialisation and data order, cross-entropy alone). By default a
CNN teacher is trained on real MNIST digits and a 19× smaller CNN student distilled from it; any vision
task works (``data.source=imagefolder:DIR``, ``teacher.model=tv:resnet18``, ``teacher.weights=...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from kd_core import Objective
from kd_core.objective import hinton_objective
from kd_core.recipes import RunContext
from kd_core.study import Arm, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field

from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.tasks import VisionData, vision_task


class KDConfig(Strict):
    """The distillation loss: temperature T and the weight α of the KD term."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9


class HintonConfig(StudyRecipe):
    """The ``hinton-kd`` recipe."""

    method: Literal["hinton-kd"] = "hinton-kd"
    data: VisionData = VisionData()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    kd: KDConfig = KDConfig()


def distill_objective(kd: KDConfig) -> Objective:
    """α·T²·KL(teacher ‖ student) + (1 − α)·CE (``kd_core.objective.hinton_objective``) with the recipe's T, α."""
    return hinton_objective(kd.temperature, kd.alpha)


def arms(config: HintonConfig, task: Task) -> dict[str, Arm]:
    """``kd`` (Hinton's objective) and its ``scratch`` twin, both trained as ``config.student`` says."""
    train = config.student.train_spec()
    return {
        "kd": Arm(lambda: train.phases(distill_objective(config.kd)), role="kd", batch_size=train.batch_size,
                  description=f"α·T²·KL + (1 − α)·CE, T = {config.kd.temperature}, α = {config.kd.alpha}"),
        "scratch": Arm(lambda: supervised_phases(train), role="scratch", batch_size=train.batch_size,
                       description="cross-entropy on the labels alone"),
    }


def task(config: HintonConfig, context: RunContext) -> Task:
    """The vision task the recipe's ``data``, ``teacher`` and ``student`` fields name."""
    return vision_task(config.data, config.teacher, config.student, context)


def notes(config: HintonConfig, task: Task) -> str:
    """The settings a reader needs beside the numbers."""
    s, t = config.student, config.teacher
    teacher = (f"Teacher {t.model} from {t.weights}" if t.weights else
               f"Teacher {t.model}: {t.epochs} epochs, AdamW lr {t.lr}, cosine decay, on the teacher pool")
    return (f"KD: T = {config.kd.temperature}, α = {config.kd.alpha}. Student {s.model}: {s.epochs} epochs, AdamW "
            f"lr {s.lr}, batch {s.batch_size}, cosine decay. {teacher}.")


METHOD = study_method(
    "hinton-kd", HintonConfig, task=task, arms=arms, teacher_training=lambda c: c.teacher.train_spec(),
    title=lambda c, t: f"Hinton KD on {t.description}", notes=notes, domain="vision",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="Hinton KD: teacher -> small student vs its scratch twin (digits by default; any image folder)")
