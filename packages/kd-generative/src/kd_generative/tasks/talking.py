"""A talking-face ``Task`` (Wav2Lip-style lip sync): windows of real faces whose mouths follow force-aligned
synthetic speech (:mod:`kd_generative.talking`), a full-size generator as the teacher, trained here with L1 and
the expert sync loss and cached, compact students, and scores of image quality and lip sync.

Prajwal et al., "A Lip Sync Expert Is All You Need for Speech to Lip Generation In the Wild", ACM MM 2020 (the
generator, the expert and its losses); Kim et al., "A Unified Compression Framework for Efficient Speech-Driven
Talking-Face Generation", arXiv:2304.00471 (the compact student: no residual blocks, widths / 4).

Splits share no face and no sentence; with ``data.test_voices`` the test split also speaks with voices that train
and val never hear. Headline: PSNR (dB) of the generated lower half to the real one (:mod:`.talking_eval`).
"""

from __future__ import annotations

from typing import Any

import torch
from kd_core.task import Splits, Task
from torch import nn

from kd_generative.talking.dataset import TalkingFaceData
from kd_generative.talking.expert import SyncExpert
from kd_generative.talking.generator import TalkingFaceGenerator
from kd_generative.tasks.talking_config import (
    ExpertConfig,
    TalkingData,
    TalkingTeacher,
    check_sizes,
    check_width_multiplier,
)
from kd_generative.tasks.talking_data import build_data, talking_forward, talking_splits
from kd_generative.tasks.talking_eval import talking_evaluator, talking_validator
from kd_generative.tasks.talking_teacher import expert_accuracies, expert_pair, train_talking_teacher

__all__ = ["student_generator", "talking_task"]


def student_generator(size: int, teacher: TalkingTeacher, width_multiplier: float = 0.25,
                      residuals: int = 0) -> TalkingFaceGenerator:
    """The compact student: the teacher's widths times ``width_multiplier`` (at least 1 channel) and ``residuals``
    residual blocks per stage (0.25 and 0: ``build_generator(compact=True)``, Nota's compressed Wav2Lip)."""
    m = check_width_multiplier(width_multiplier)
    return TalkingFaceGenerator(size, max(1, round(teacher.width * m)), max(1, round(teacher.audio_width * m)),
                                residuals)


def talking_task(data: TalkingData, teacher: TalkingTeacher, expert: ExpertConfig, *,
                 width_multiplier: float = 0.25, student_residuals: int = 0, device: str = "auto",
                 reuse_teacher: bool = True, max_offset: int = 6) -> Task:
    """The task (see the module doc). Bad sizes, widths and voices are refused here, before any data is built.

    ``task.extras``: ``data()`` (the :class:`TalkingFaceData`), ``experts()`` (``{"loss": ..., "scoring": ...}``),
    ``expert_accuracy()`` (each expert on val/test pairs), ``build_teacher`` (untrained), ``teacher_note`` and
    ``expert_note`` (filled once built), ``size``, ``max_offset``."""
    check_sizes(data, teacher)
    check_width_multiplier(width_multiplier)
    made: dict[str, Any] = {}
    extras: dict[str, Any] = {"teacher_note": "", "expert_note": "", "size": data.size, "max_offset": max_offset}

    def splits() -> Splits:
        if "splits" not in made:
            source = build_data(data.size, data.sentences, data.voices, data.faces_per_utterance, data.stride,
                                data.drift, data.seed)
            made["data"], made["splits"] = source, talking_splits(source, data.test_voices, data.stride,
                                                                  data.eval_stride)
        return made["splits"]

    def source() -> TalkingFaceData:
        splits()
        return made["data"]

    def experts() -> dict[str, SyncExpert]:
        if "experts" not in made:
            loss, scoring, note = expert_pair(splits().train.windows, expert, reuse=reuse_teacher)
            made["experts"], extras["expert_note"] = {"loss": loss, "scoring": scoring}, note
        return made["experts"]

    def accuracy() -> dict[str, float]:
        if "accuracy" not in made:
            parts = splits()
            made["accuracy"] = expert_accuracies(experts(), {"val": parts.val.windows, "test": parts.test.windows})
        return made["accuracy"]

    def build_teacher() -> nn.Module:
        return TalkingFaceGenerator(data.size, teacher.width, teacher.audio_width, teacher.residuals)

    def build_student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return student_generator(data.size, teacher, width_multiplier, student_residuals)

    def trained_teacher() -> nn.Module:
        if "teacher" not in made:
            determinants = {"data": source().manifest(), "windows": data.model_dump(),
                            "expert": expert.model_dump()}
            model, note = train_talking_teacher(build_teacher, splits(), teacher, experts()["loss"], determinants,
                                                device, talking_validator, reuse=reuse_teacher)
            made["teacher"], extras["teacher_note"] = model, (
                f"trained here with L1 + {teacher.sync:g}·L_sync ({teacher.epochs} epochs, Adam lr {teacher.lr:g}) "
                f"and {note}")
        return made["teacher"]

    extras.update(data=source, experts=experts, expert_accuracy=accuracy, build_teacher=build_teacher)
    held = f", test voices {', '.join(data.test_voices)} held out" if data.test_voices else ""
    description = (f"talking faces {data.size}×{data.size}: lower half from audio, synthetic speech of "
                   f"{len(data.voices)} voices on real faces{held}")
    return Task(name="wav2lip-talking", splits=splits, teacher=trained_teacher, student=build_student,
                key={"data": data.model_dump(), "teacher": teacher.model_dump(), "expert": expert.model_dump()},
                teacher_trained=True, evaluator=talking_evaluator(source, trained_teacher,
                                                                  lambda: experts()["scoring"], max_offset),
                validator=talking_validator, headline="psnr", higher_is_better=True, percent=(),
                forward=talking_forward, description=description, extras=extras,
                student_field="student.width_multiplier", teacher_field="teacher.width")
