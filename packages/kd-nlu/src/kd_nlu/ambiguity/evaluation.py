"""Scoring a text classifier against human label distributions (accuracy, ECE, JSD, KL, confidence when wrong):
directly, or as a ``Task`` evaluator over a study's batches (``soft_label_evaluator``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from kd_core.ambiguity_metrics import ambiguity_metrics
from kd_core.metrics import count_parameters
from kd_core.signals import Forward
from kd_core.taps import TapSet, select_logits, unwrap
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


#: A sample is ambiguous when the humans' most frequent label got at most this share of their votes.
AMBIGUOUS_TOP = 0.6


def ambiguous_subset_metrics(logits: torch.Tensor, labels: torch.Tensor, human: torch.Tensor,
                             top: float = AMBIGUOUS_TOP) -> dict[str, float]:
    """``jsd_ambiguous`` and ``kl_ambiguous`` on the samples whose human top probability is ≤ ``top`` (where
    ambiguity-aware training should show), and ``ambiguous_share``, their fraction; NaN metrics when none is."""
    mask = human.max(-1).values <= top + 1e-9
    if not bool(mask.any()):
        return {"jsd_ambiguous": float("nan"), "kl_ambiguous": float("nan"), "ambiguous_share": 0.0}
    subset = ambiguity_metrics(logits[mask], labels[mask], human[mask])
    return {"jsd_ambiguous": subset["jsd"], "kl_ambiguous": subset["kl"],
            "ambiguous_share": float(mask.float().mean())}


def soft_label_evaluator(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward) -> dict[str, float]:
    """A ``Task`` evaluator: the ambiguity metrics of ``model`` against each batch's ``label`` and human
    distribution (``soft_label``), overall and on the ambiguous samples (``ambiguous_subset_metrics``); for a
    model with a lower head (S1's ``SelfDistillModel``) also the lower head's ``lower_accuracy``, ``lower_jsd``
    and ``lower_kl``."""
    taps = TapSet(model, ["lower_head"]) if hasattr(unwrap(model), "lower_head") else None
    columns: dict[str, list[torch.Tensor]] = {"logits": [], "label": [], "soft_label": [], "lower_head": []}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            out = taps.run(forward, model, batch) if taps is not None else {"logits": forward(model, batch)}
            columns["logits"].append(select_logits(out["logits"]).float().cpu())
            if taps is not None:
                columns["lower_head"].append(out["lower_head"].float().cpu())
            columns["label"].append(batch["label"].cpu())
            columns["soft_label"].append(batch["soft_label"].float().cpu())
    model.train(was_training)
    labels, human = torch.cat(columns["label"]), torch.cat(columns["soft_label"])
    logits = torch.cat(columns["logits"])
    metrics = ambiguity_metrics(logits, labels, human) | ambiguous_subset_metrics(logits, labels, human)
    if columns["lower_head"]:
        lower = ambiguity_metrics(torch.cat(columns["lower_head"]), labels, human)
        metrics.update({f"lower_{k}": lower[k] for k in ("accuracy", "jsd", "kl")})
    return metrics
