"""A fixed classifier head restricted to the classes seen so far, as a ``Distiller`` forward.

The model keeps all its outputs; the logits of unseen classes are replaced by a large negative constant,
so softmax, cross-entropy, argmax and accuracy only range over seen classes and no gradient reaches the
unseen rows of the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["MASKED_LOGIT", "SeenClassesForward"]

#: The logit given to unseen classes: exp(-1e4) is 0 in every float type, and it stays finite (no NaN).
MASKED_LOGIT = -1e4


class SeenClassesForward:
    """``forward(model, batch)`` returning ``model(batch["input"])`` with unseen classes masked."""

    def __init__(self, seen: Sequence[int]) -> None:
        if not seen:
            raise ConfigError("seen", "at least one seen class", list(seen))
        self.seen = sorted(int(c) for c in seen)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with every column outside ``seen`` set to :data:`MASKED_LOGIT`."""
        if self.seen[-1] >= logits.shape[-1]:
            raise ConfigError("seen", f"classes below the model's {logits.shape[-1]} outputs", self.seen)
        unseen = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
        unseen[self.seen] = False
        return logits.masked_fill(unseen, MASKED_LOGIT)

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.mask(model(batch["input"]))
