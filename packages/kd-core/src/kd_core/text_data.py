"""Tokenised text datasets: the one shape every text model (kd-nlu's, kd-speech's text teacher) is fed.

A ``TextDataset`` holds texts and (optional) integer labels, tokenises lazily with a Hugging Face
tokenizer, and yields dicts ``{"input_ids", "attention_mask", "label"}`` (plus ``"soft_label"`` when a
per-sample label distribution is given). ``TextCollator`` pads a batch to its longest member, so batches
stay small; pass it as the ``collate`` of ``kd_core.Distiller``. ``encoder_forward`` is the matching
``forward`` for encoder models (it drops the keys a model does not take).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from kd_core.errors import DataError

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class TextDataset(Dataset):
    """Texts (and labels) tokenised on access, truncated to ``max_length`` tokens."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int] | None, tokenizer: Any, max_length: int = 64,
                 soft_labels: torch.Tensor | None = None) -> None:
        if len(texts) == 0:
            raise DataError("texts", "at least one text", 0)
        if labels is not None and len(labels) != len(texts):
            raise DataError("labels", f"one label per text ({len(texts)})", len(labels))
        if soft_labels is not None and len(soft_labels) != len(texts):
            raise DataError("soft_labels", f"one distribution per text ({len(texts)})", len(soft_labels))
        if max_length < 2:
            raise DataError("max_length", "at least 2 tokens", max_length)
        self.texts, self.labels = list(texts), None if labels is None else [int(y) for y in labels]
        self.tokenizer, self.max_length, self.soft_labels = tokenizer, max_length, soft_labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        encoded = self.tokenizer(self.texts[index], truncation=True, max_length=self.max_length)
        item: dict[str, Any] = {k: torch.tensor(v) for k, v in encoded.items() if k in MODEL_KEYS}
        if self.labels is not None:
            item["label"] = self.labels[index]
        if self.soft_labels is not None:
            item["soft_label"] = self.soft_labels[index]
        return item


class TextCollator:
    """Pads token tensors to the longest sample of the batch and stacks everything else."""

    def __init__(self, pad_token_id: int = 0) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        longest = max(len(s["input_ids"]) for s in samples)
        for key in samples[0]:
            values = [s[key] for s in samples]
            if key in MODEL_KEYS:
                pad = self.pad_token_id if key == "input_ids" else 0
                out = torch.full((len(values), longest), pad, dtype=torch.long)
                for row, value in enumerate(values):
                    out[row, : len(value)] = torch.as_tensor(value)
                batch[key] = out
            elif isinstance(values[0], torch.Tensor):
                batch[key] = torch.stack(values)
            else:
                batch[key] = torch.as_tensor(values)
        return batch


def encoder_forward(model: nn.Module, batch: Mapping[str, Any]) -> Any:
    """Call a transformers model with the batch's token tensors only (``forward`` for ``Distiller``)."""
    return model(**{k: batch[k] for k in MODEL_KEYS if k in batch})
