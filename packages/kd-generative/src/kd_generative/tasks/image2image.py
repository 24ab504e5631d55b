"""An image-to-image ``Task``: paired splits, a Pix2Pix teacher trained here (or given), U-Net students, and an
evaluator scoring images against the targets and against the teacher's (headline: PSNR to the target, dB)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.specs import load_weights_into
from kd_core.task import Task
from torch import nn

from kd_generative.metrics import FeatureNetwork, feature_network
from kd_generative.models.patchgan import min_input_size
from kd_generative.models.unet import build_unet, unet_widths
from kd_generative.tasks.config import GanConfig, PairedData
from kd_generative.tasks.evaluate import translation_evaluator, translation_validator
from kd_generative.tasks.splits import paired_splits
from kd_generative.tasks.teacher import TeacherConfig, train_pix2pix_teacher

__all__ = ["check_geometry", "image_task"]


def check_geometry(size: int, depth: int, gan: GanConfig | None, argument: str = "teacher.depth") -> None:
    """Refuse, before any data or training, a ``depth`` whose 2**depth does not divide ``size`` (a U-Net halves
    the side ``depth`` times) and a PatchGAN whose ``n_layers`` needs larger images than ``size``."""
    if size % 2**depth:
        largest = (size & -size).bit_length() - 1
        raise ConfigError(argument, f"a depth whose 2**depth divides data.size = {size} (at most {largest})", depth)
    if gan is not None and size < min_input_size(gan.n_layers):
        raise ConfigError("gan.n_layers", f"a PatchGAN that fits data.size = {size} (its n_layers needs "
                          f"{min_input_size(gan.n_layers)} px)", gan.n_layers)


def image_task(data: PairedData, teacher: TeacherConfig, student_widths: Sequence[int], gan: GanConfig, *,
               device: str = "auto", feature_steps: int = 200, reuse_teacher: bool = True,
               student_dropout: float | None = None) -> Task:
    """The task of ``data`` with a ``teacher`` U-Net (trained here with L1 + cGAN unless ``teacher.weights``) and
    students of ``student_widths`` (same depth). ``feature_steps``: the metric feature network's training steps.

    ``task.extras``: ``build_teacher`` (an untrained teacher), ``teacher_note`` (filled once the teacher is
    built), ``in_channels``."""
    depth = teacher.depth
    check_geometry(data.size, depth, gan if teacher.weights is None else None)
    if len(student_widths) != depth:
        raise ConfigError("student.widths", f"{depth} widths (the teacher's depth)", list(student_widths))
    splits, what, key, in_channels = paired_splits(data, 2**depth)
    widths = unet_widths(depth, teacher.base, teacher.max_mult)
    extras: dict[str, Any] = {"in_channels": in_channels, "teacher_note": "", "teacher_widths": widths,
                              "source": data.source}

    def build_teacher() -> nn.Module:
        return build_unet(in_channels, 3, depth=depth, widths=widths, dropout=teacher.dropout,
                          dropout_levels=teacher.dropout_levels, image_size=data.size)

    def build_student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_unet(in_channels, 3, depth=depth, widths=list(student_widths),
                          dropout=teacher.dropout if student_dropout is None else student_dropout,
                          dropout_levels=teacher.dropout_levels, image_size=data.size)

    made: dict[str, Any] = {}

    def features() -> FeatureNetwork:
        if "net" not in made:
            made["net"] = feature_network(steps=feature_steps)
        return made["net"]

    def trained_teacher() -> nn.Module:
        if "teacher" not in made:
            if teacher.weights:
                model = load_weights_into(build_teacher(), teacher.weights, "teacher.weights").eval()
                note = f"given with its weights ({teacher.weights}), used as it is"
            else:
                model, note = train_pix2pix_teacher(build_teacher, splits, teacher, gan, in_channels, key, device,
                                                    translation_validator, reuse=reuse_teacher)
                note = (f"trained here with Pix2Pix's L1 + cGAN (λ_L1 = {teacher.lambda_l1:g}, {teacher.epochs} "
                        f"epochs) and {note}")
            made["teacher"], extras["teacher_note"] = model, note
        return made["teacher"]

    extras["build_teacher"] = build_teacher
    name = f"pix2pix-{data.source.partition(':')[0]}"
    return Task(name=name, splits=lambda: splits, teacher=trained_teacher, student=build_student,
                key={**key, "teacher": teacher.model_dump(exclude={"weights"})}, teacher_trained=True,
                evaluator=translation_evaluator(trained_teacher, features), validator=translation_validator,
                headline="psnr", higher_is_better=True, percent=(), description=what, extras=extras,
                student_field="student.width_divisor", teacher_field="teacher.model")
