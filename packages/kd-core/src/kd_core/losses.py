"""Loss terms for distillation: pure functions over raw logits or features, never probabilities.

Conventions:
- tempered distributions are always computed with ``log_softmax``; a temperature must be > 0;
- ``kl_divergence(..., direction="forward")`` is KL(p_teacher ‖ p_student), Hinton et al. (2015),
  "Distilling the Knowledge in a Neural Network", arXiv:1503.02531, scaled by T² by default;
- the class (or feature) axis is the last one; every leading axis is a sample or position, and
  ``reduction="mean"`` averages over them after summing over classes ("batchmean" for 2-D input).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kd_core.errors import ConfigError

Reduction = Literal["mean", "sum", "none"]


def check_temperature(temperature: float, argument: str = "temperature") -> float:
    """Return ``temperature`` as a float, or raise ``ConfigError`` if it is not a finite number > 0."""
    if type(temperature) is float and 0.0 < temperature < math.inf:  # the common case, checked per step
        return temperature
    if isinstance(temperature, bool):
        raise ConfigError(argument, "a number > 0", temperature)
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(argument, "a number > 0", temperature) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(argument, "a number > 0", temperature)
    return value


def check_same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str = "classes") -> None:
    """Raise ``ConfigError`` unless teacher and student outputs have the same shape."""
    if student.shape == teacher.shape:  # the common case, checked per step
        return
    if student.shape[-1] != teacher.shape[-1]:
        raise ConfigError("teacher", f"outputs with {student.shape[-1]} {what} like the student's",
                          f"{teacher.shape[-1]} {what}",
                          hint="map the label spaces first, or add a projection")
    raise ConfigError("teacher", f"outputs of shape {tuple(student.shape)} like the student's", tuple(teacher.shape))


def _f32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 (losses are computed in float32 under any precision); no cast op when it already is."""
    return x if x.dtype is torch.float32 else x.float()


def _i64(x: torch.Tensor) -> torch.Tensor:
    """``x`` as int64 class labels; no cast op when it already is."""
    return x if x.dtype is torch.int64 else x.long()


def _reduce(per_position: torch.Tensor, reduction: Reduction, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        mask = mask.to(per_position.dtype)
        per_position = per_position * mask
        if reduction == "mean":
            return per_position.sum() / mask.sum().clamp_min(1.0)
    if reduction == "mean":
        return per_position.mean()
    if reduction == "sum":
        return per_position.sum()
    if reduction == "none":
        return per_position
    raise ConfigError("reduction", "'mean', 'sum' or 'none'", reduction)


def _scaled(value: torch.Tensor, temperature: float, t2_scale: bool, rows: int = 1) -> torch.Tensor:
    """``value × T² / rows`` (Hinton's gradient-size correction, and a mean's divisor when the value is a sum),
    applied after reduction: one op on a scalar, none when the factor is 1."""
    factor = (temperature * temperature if t2_scale else 1.0) / max(rows, 1)
    return value * factor if factor != 1.0 else value


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) summed over the last axis, from log-probabilities (exact zeros where p = 0)."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def kl_divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    direction: Literal["forward", "reverse"] = "forward",
    t2_scale: bool = True,
    reduction: Reduction = "mean",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL divergence between tempered teacher and student distributions.

    ``forward``: KL(p_t^T ‖ p_s^T) (mass-covering, Hinton KD); ``reverse``: KL(p_s^T ‖ p_t^T)
    (mode-seeking). Multiplied by T² when ``t2_scale`` so gradients keep their size as T changes.
    """
    t = check_temperature(temperature)
    check_same_shape(student, teacher)
    log_s = F.log_softmax(_f32(student) / t, dim=-1)
    log_t = F.log_softmax(_f32(teacher) / t, dim=-1)
    if direction == "forward":
        target, prediction = log_t, log_s
    elif direction == "reverse":
        target, prediction = log_s, log_t
    else:
        raise ConfigError("direction", "'forward' or 'reverse'", direction)
    if mask is None and reduction in ("mean", "sum"):  # one fused op: no per-row tensor
        total = F.kl_div(prediction, target, reduction="sum", log_target=True)
        rows = target.numel() // max(target.shape[-1], 1) if reduction == "mean" else 1
        return _scaled(total, t, t2_scale, rows)  # the mean and T² as one multiply
    return _scaled(_reduce(_kl_rows(target, prediction), reduction, mask), t, t2_scale)


def balanced_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    sharpness: float = 5.0,
    t2_scale: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """BD-KD's sample-wise mix of forward and reverse KL (Amara et al., arXiv:2212.12965).

    With the entropy gap Δᵢ = H(p_s) − H(p_t) (detached), bᵢ = σ(k·Δᵢ) weights the reverse KL and
    aᵢ = 1 − bᵢ the forward KL: an unsure student is sharpened, an over-confident one softened.
    """
    t = check_temperature(temperature)
    if isinstance(sharpness, bool) or not isinstance(sharpness, int | float) or not math.isfinite(sharpness) \
            or sharpness < 0:
        raise ConfigError("sharpness", "a finite number ≥ 0 (k in b = σ(k·Δ))", sharpness)
    check_same_shape(student, teacher)
    log_s = F.log_softmax(_f32(student) / t, dim=-1)
    log_t = F.log_softmax(_f32(teacher) / t, dim=-1)
    with torch.no_grad():
        gap = -(log_s.exp() * log_s).sum(-1) + (log_t.exp() * log_t).sum(-1)
        b = torch.sigmoid(sharpness * gap)
    rows = (1 - b) * _kl_rows(log_t, log_s) + b * _kl_rows(log_s, log_t)
    return _scaled(_reduce(rows, reduction, None), t, t2_scale)


def soft_cross_entropy(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    t2_scale: bool = True,
    reduction: Reduction = "mean",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy against the teacher's tempered distribution: −Σ p_t log p_s (× T²)."""
    t = check_temperature(temperature)
    check_same_shape(student, teacher)
    log_s = F.log_softmax(_f32(student) / t, dim=-1)
    p_t = F.softmax(_f32(teacher) / t, dim=-1)
    rows = -(p_t * log_s).sum(-1)
    return _scaled(_reduce(rows, reduction, mask), t, t2_scale)


def cross_entropy(
    student: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy against hard labels; the class axis is the last one (sequences are flattened)."""
    if student.shape[:-1] != target.shape:
        raise ConfigError("target", f"labels of shape {tuple(student.shape[:-1])}", tuple(target.shape))
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError("reduction", "'mean', 'sum' or 'none'", reduction)
    flat = student.dim() == 2  # (batch, classes): no reshapes needed
    loss = F.cross_entropy(_f32(student) if flat else _f32(student).reshape(-1, student.shape[-1]),
                           _i64(target if flat else target.reshape(-1)),
                           label_smoothing=label_smoothing, ignore_index=ignore_index,
                           reduction="none" if reduction == "none" else reduction)
    return loss.reshape(target.shape) if reduction == "none" else loss


def logit_mse(student: torch.Tensor, teacher: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean squared error between student logits and ``scale`` × teacher logits (Annealing-KD)."""
    check_same_shape(student, teacher)
    return F.mse_loss(_f32(student), scale * _f32(teacher))


def l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between two tensors of the same shape."""
    check_same_shape(student, teacher, what="features")
    return F.l1_loss(_f32(student), _f32(teacher))


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor,
               projection: nn.Module | None = None) -> torch.Tensor:
    """MSE between (optionally projected) student features and teacher features."""
    if projection is not None:
        student = projection(student)
    check_same_shape(student, teacher, what="features")
    return F.mse_loss(_f32(student), _f32(teacher))


class HiddenMSE(nn.Module):
    """``hidden_mse`` with a learned projection from the student's width to the teacher's.

    The projection is a linear map on the last axis (``[..., d_s] -> [..., d_t]``), or a 1×1
    convolution on the channel axis when ``channels_first`` (``[B, C_s, H, W]``). It is trained with
    the student and discarded after training.
    """

    def __init__(self, student_dim: int, teacher_dim: int, channels_first: bool = False) -> None:
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(name, "a positive integer width", value)
        self.channels_first = channels_first
        self.projection: nn.Module
        if channels_first:
            self.projection = nn.Conv2d(student_dim, teacher_dim, kernel_size=1, bias=False)
        else:
            self.projection = nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The MSE between the projected student features and the teacher features."""
        return hidden_mse(student, teacher, self.projection)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, masked_below: float = -1e2) -> torch.Tensor:
    """TinyBERT's attention loss: MSE between attention maps, with masked (very negative) entries zeroed.

    Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv:1909.10351.
    """
    check_same_shape(student, teacher, what="key positions")
    s = torch.where(student <= masked_below, torch.zeros_like(student), student)
    t = torch.where(teacher <= masked_below, torch.zeros_like(teacher), teacher)
    return F.mse_loss(_f32(s), _f32(t))


def info_nce(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE between paired embeddings: row i of the student should match row i of the teacher.

    Both are L2-normalised; the other rows of the batch are the negatives (van den Oord et al., 2018,
    arXiv:1807.03748).
    """
    t = check_temperature(temperature)
    check_same_shape(student, teacher, what="features")
    s = F.normalize(_f32(student).flatten(1), dim=-1)
    k = F.normalize(_f32(teacher).flatten(1), dim=-1)
    logits = s @ k.T / t
    return F.cross_entropy(logits, torch.arange(len(s), device=s.device))


LOSSES = {
    "kl_divergence": kl_divergence,
    "balanced_kl": balanced_kl,
    "soft_cross_entropy": soft_cross_entropy,
    "cross_entropy": cross_entropy,
    "logit_mse": logit_mse,
    "hidden_mse": hidden_mse,
    "attention_loss": attention_loss,
    "info_nce": info_nce,
    "l1": l1,
}
"""Losses by name, for recipes."""
