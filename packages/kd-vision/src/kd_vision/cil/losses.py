"""The two loss terms of a class-incremental step: cross-entropy on labelled samples and old-class logit KD.

- ``labelled_cross_entropy``: CE averaged over the samples whose label is not ``IGNORE`` (-100). Samples
  used only for distillation (variant C's generated images) carry ``IGNORE``; a batch with none labelled
  gives 0, not NaN.
- ``old_class_kl``: LwF/iCaRL-style logit distillation from the frozen previous model f_{t−1}: T²·KL of
  the tempered softmax over the **old classes only** (the columns f_{t−1} was trained on), so the new
  classes' logits are left to the cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence

__all__ = ["IGNORE", "labelled_cross_entropy", "old_class_kl"]

#: The label of a sample that takes part in distillation only.
IGNORE = -100


def labelled_cross_entropy(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples with ``target != IGNORE`` (0 when there are none)."""
    per_sample = cross_entropy(student, target, ignore_index=IGNORE, reduction="none")
    labelled = (target != IGNORE).to(per_sample.dtype)
    return (per_sample * labelled).sum() / labelled.sum().clamp_min(1.0)


def old_class_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0,
                 classes: Sequence[int] = ()) -> torch.Tensor:
    """T²·KL(softmax(teacher[:, classes]/T) ‖ softmax(student[:, classes]/T)), mean over the batch."""
    if len(classes) == 0:
        raise ConfigError("classes", "the old classes to distil (at least one)", list(classes))
    if max(classes) >= student.shape[-1] or min(classes) < 0:
        raise ConfigError("classes", f"class ids in [0, {student.shape[-1] - 1}]", list(classes))
    index = torch.as_tensor(list(classes), device=student.device)
    return kl_divergence(student.index_select(-1, index), teacher.index_select(-1, index),
                         temperature=temperature)
