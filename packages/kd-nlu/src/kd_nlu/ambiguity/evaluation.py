"""Scoring a text classifier against human label distributions (accuracy, ECE, JSD, KL, confidence when wrong)."""

from __future__ import annotations

from typing import Any

import torch
from kd_core.ambiguity_metrics import ambiguity_metrics
from kd_core.metrics import count_parameters
from kd_core.taps import TapSet
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_nlu.ambiguity.data import AmbiguityTask
from kd_nlu.data.text import TextCollator, encoder_forward


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, pad_token_id: int, tap: str = "logits",
                   batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` (or of one of its taps, e.g. ``lower_head``) over ``dataset``, in eval mode, on CPU."""
    device = next(model.parameters()).device
    taps = TapSet(model, [tap])
    was_training = model.training
    model.eval()
    chunks = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=TextCollator(pad_token_id)):
        batch = {k: v.to(device) for k, v in batch.items()}
        chunks.append(taps.run(encoder_forward, model, batch)[tap].float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


def score(logits: torch.Tensor, task: AmbiguityTask) -> dict[str, float]:
    """``kd_core.ambiguity_metrics.ambiguity_metrics`` of ``logits`` against the task's labels and distributions."""
    return ambiguity_metrics(logits, torch.tensor(task.labels), task.human)


def evaluate(model: nn.Module, dataset: Dataset, task: AmbiguityTask, pad_token_id: int,
             tap: str = "logits", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ambiguity metrics of ``model`` on ``task`` plus its parameter count (and ``extra`` fields)."""
    result: dict[str, Any] = score(predict_logits(model, dataset, pad_token_id, tap), task)
    result["params"] = count_parameters(model)
    result.update(extra or {})
    return result
