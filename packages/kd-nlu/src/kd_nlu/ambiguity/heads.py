"""Pooling a layer's hidden states into one vector per text, and the linear probe head on top of it."""

from __future__ import annotations

from typing import Literal

import torch
from kd_core.errors import ConfigError
from torch import nn

Pooling = Literal["cls", "mean"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: Pooling = "cls") -> torch.Tensor:
    """``[N, T, H]`` hidden states to ``[N, H]``: the first ([CLS]) token, or the mean over unmasked tokens."""
    if hidden.dim() != 3:
        raise ConfigError("hidden", "hidden states of shape [N, T, H]", tuple(hidden.shape))
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    raise ConfigError("pooling", "'cls' or 'mean'", pooling)


class ProbeHead(nn.Module):
    """A linear classifier on a layer's pooled hidden state.

    With ``detach`` (the default) no gradient reaches the encoder: the head is a probe and does not
    reshape the trunk (both papers' lower heads read frozen or detached features).
    """

    def __init__(self, hidden_size: int, num_labels: int, pooling: Pooling = "cls", detach: bool = True) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ConfigError("pooling", "'cls' or 'mean'", pooling)
        for argument, value in (("hidden_size", hidden_size), ("num_labels", num_labels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(argument, "a positive integer", value)
        self.pooling, self.detach = pooling, detach
        self.linear = nn.Linear(hidden_size, num_labels)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from already pooled features ``[..., H]``."""
        return self.linear(pooled.detach() if self.detach else pooled)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[N, C]`` from a layer's hidden states ``[N, T, H]``."""
        return self.classify(pool(hidden, attention_mask, self.pooling))
