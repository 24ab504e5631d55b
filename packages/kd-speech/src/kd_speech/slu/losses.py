"""The two losses of two-stage textual KD for spoken language understanding.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105):

- **PT-KD** (additional pre-training): the speech encoder's utterance ``[CLS]`` vector is pulled towards the frozen
  text encoder's ``[CLS]`` of the transcript, next to the vq-token masked-LM loss. The paper names a regression
  distance but its training script is not public; here it is the mean squared error, averaged over the batch *and*
  the feature axis (``F.mse_loss`` with ``reduction="mean"``). When the widths differ, a projector (e.g. an
  ``nn.Linear``) maps the speech vector to the text width first.
- **FT-KD** (fine-tuning): ``L_FT = CE(y, o_s) + kd_weight * (1/B) * sum_b ||o_s_b - o_t_b||_1``: cross-entropy
  against the intent label plus an L1 distance between raw student and teacher logits, summed over classes and
  averaged over the batch (the reference code: ``L1Loss(reduction="sum") / B``, weight 1).

The teacher's tensors are detached in both losses (the text teacher is frozen in the paper); :func:`logit_l1` is
the plain L1 term, without detaching, for use as a kd-core objective term.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["FTKDLoss", "ft_kd_loss", "logit_l1", "pt_kd_loss"]


class FTKDLoss(NamedTuple):
    """The FT-KD loss: ``total = ce + kd_weight * l1`` and its two unweighted parts."""

    total: torch.Tensor
    ce: torch.Tensor
    l1: torch.Tensor


def _shape(x: torch.Tensor) -> str:
    return f"{x.dtype} {tuple(x.shape)}"


def _float_matrix(argument: str, x: object, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ConfigError(argument, f"a float tensor [B, {what}]", _shape(x) if isinstance(x, torch.Tensor) else x)
    return x


def pt_kd_loss(speech_cls: torch.Tensor, text_cls: torch.Tensor, projector: nn.Module | None = None) -> torch.Tensor:
    """PT-KD distance: MSE (mean over batch and features) between the (projected) speech and text ``[CLS]`` vectors.

    ``speech_cls`` is ``[B, D_s]``, ``text_cls`` ``[B, D_t]`` (detached: the text encoder is frozen). With
    ``projector`` the speech vector is mapped first; without one the widths must be equal.
    """
    _float_matrix("speech_cls", speech_cls, "D_s")
    _float_matrix("text_cls", text_cls, "D_t")
    if projector is not None:
        speech_cls = projector(speech_cls)
        _float_matrix("projector", speech_cls, "D_t")
    if speech_cls.shape[0] != text_cls.shape[0]:
        raise ConfigError("text_cls", f"one vector per utterance ({speech_cls.shape[0]})", text_cls.shape[0])
    if speech_cls.shape[1] != text_cls.shape[1]:
        raise ConfigError("text_cls", f"vectors of the speech width {speech_cls.shape[1]}", text_cls.shape[1],
                          hint="pass a projector, e.g. nn.Linear(speech width, text width)"
                          if projector is None else "the projector must output the text width")
    return F.mse_loss(speech_cls.float(), text_cls.detach().float())


def logit_l1(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``||s_b - t_b||_1`` summed over the last (class) axis, then averaged (``mean``) or summed over samples.

    ``reduction="none"`` gives one value per sample. Note the normalisation: the mean is over samples only, not
    over classes (``F.l1_loss`` would also divide by the number of classes).
    """
    if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
        raise ConfigError("teacher", "logit tensors", (type(student).__name__, type(teacher).__name__))
    if student.shape != teacher.shape:
        if student.dim() and teacher.dim() and student.shape[-1] != teacher.shape[-1]:
            raise ConfigError("teacher", f"logits over {student.shape[-1]} classes like the student's",
                              f"{teacher.shape[-1]} classes",
                              hint="the text teacher and the speech student must share one intent label set, "
                                   "in the same order")
        raise ConfigError("teacher", f"logits of shape {tuple(student.shape)} like the student's",
                          tuple(teacher.shape))
    per_sample = (student.float() - teacher.float()).abs().sum(-1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ConfigError("reduction", "'mean', 'sum' or 'none'", reduction)


def ft_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
               kd_weight: float = 1.0) -> FTKDLoss:
    """FT-KD: ``CE(labels, student) + kd_weight * (1/B) sum_b ||student_b - teacher_b||_1`` over raw logits.

    ``student_logits`` and ``teacher_logits`` are ``[B, C]`` over the same ``C`` intents (the teacher's are
    detached); ``labels`` are ``[B]`` class ids. Returns the total and the unweighted CE and L1 parts.
    """
    _float_matrix("student_logits", student_logits, "C")
    _float_matrix("teacher_logits", teacher_logits, "C")
    classes = student_logits.shape[1]
    if teacher_logits.shape[1] != classes:
        raise ConfigError("teacher_logits", f"logits over {classes} classes like the student's",
                          f"{teacher_logits.shape[1]} classes",
                          hint="the text teacher and the speech student must share one intent label set, "
                               "in the same order")
    if teacher_logits.shape[0] != student_logits.shape[0]:
        raise ConfigError("teacher_logits", f"{student_logits.shape[0]} rows like the student's",
                          teacher_logits.shape[0])
    if (not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dim() != 1
            or labels.shape[0] != student_logits.shape[0]):
        raise ConfigError("labels", f"an integer tensor [{student_logits.shape[0]}] of class ids",
                          _shape(labels) if isinstance(labels, torch.Tensor) else labels)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ConfigError("labels", f"class ids in [0, {classes})", (int(labels.min()), int(labels.max())))
    if (isinstance(kd_weight, bool) or not isinstance(kd_weight, int | float) or not math.isfinite(kd_weight)
            or kd_weight < 0):
        raise ConfigError("kd_weight", "a finite number >= 0", kd_weight)
    ce = F.cross_entropy(student_logits.float(), labels.long())
    l1 = logit_l1(student_logits, teacher_logits.detach())
    return FTKDLoss(total=ce + kd_weight * l1, ce=ce, l1=l1)
