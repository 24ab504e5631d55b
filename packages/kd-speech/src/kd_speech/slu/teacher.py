"""The frozen text teacher of two-stage textual KD, read from the text fields of a speech batch.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105): the text encoder (fine-tuned on the transcripts' intents for FT-KD) is frozen and
run under ``no_grad``; PT-KD reads its ``[CLS]`` vector (last hidden state at position 0), FT-KD its intent logits.

:class:`TranscriptTeacher` wraps any text model called as ``model(input_ids=..., attention_mask=...)`` (a transformers
``BertForSequenceClassification`` or ``BertModel``, e.g. a MiniLM loaded by the caller) so that it takes the same
batch dict as the speech student: the transcript's ids and mask sit under their own keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["TranscriptTeacher"]


class TranscriptTeacher(nn.Module):
    """A frozen text model: ``forward(batch)`` gives ``{"logits"}`` and, with ``with_cls``, ``{"cls"}``.

    The model's parameters stop requiring gradients and it stays in eval mode. ``with_cls`` asks the model for
    ``output_hidden_states=True`` and reads the last layer's position 0; a model without logits (a bare encoder)
    gives ``cls`` only.
    """

    def __init__(self, model: nn.Module, input_key: str = "text_input_ids",
                 mask_key: str | None = "text_attention_mask", with_cls: bool = False) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError("model", "a text model (nn.Module)", type(model).__name__)
        self.model = model.requires_grad_(False).eval()
        self.input_key, self.mask_key, self.with_cls = input_key, mask_key, bool(with_cls)

    def train(self, mode: bool = True) -> TranscriptTeacher:
        """The teacher stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The teacher's outputs on ``batch[input_key]`` (and ``batch[mask_key]`` when present)."""
        if not isinstance(batch, Mapping) or self.input_key not in batch:
            received = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ConfigError("batch", f"a mapping with the transcripts' ids under {self.input_key!r}", received)
        kwargs: dict[str, Any] = {"input_ids": batch[self.input_key]}
        if self.mask_key is not None and batch.get(self.mask_key) is not None:
            kwargs["attention_mask"] = batch[self.mask_key]
        if self.with_cls:
            kwargs["output_hidden_states"] = True
        with torch.no_grad():
            out = self.model(**kwargs)
        result: dict[str, torch.Tensor] = {}
        logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
        if logits is not None:
            result["logits"] = logits
        if self.with_cls:
            hidden_states = getattr(out, "hidden_states", None)
            if not hidden_states:
                raise ConfigError("model", "a model returning hidden_states with output_hidden_states=True",
                                  type(self.model).__name__, hint="use with_cls=False for logits only")
            result["cls"] = hidden_states[-1][:, 0]
        if not result:
            raise ConfigError("model", "a model returning logits (or hidden states with with_cls=True)",
                              type(out).__name__)
        return result
