"""The accuracy matrix on the test split, and the class-incremental evaluator a Study scores students with.

- ``task_accuracies``: one row from logits: accuracy on each task's samples, predicting among the classes of
  the tasks seen so far (unseen classes masked as in training);
- ``accuracy_row``: that row for a model over a test dataset (used after every task of a stream);
- ``IncrementalClassifier``: a classifier that keeps the rows it earned after each task (a buffer, so
  checkpoints carry it);
- ``IncrementalEvaluator``: a ``Task`` evaluator returning average incremental accuracy, final accuracy,
  forgetting and the accuracy after each task (``kd_vision.cil.metrics``). The last row is computed from the
  batches it is given; earlier rows come from the model's history. A model without one (the joint-training
  reference) is scored as one fixed model after every step: row i masks the classes of later tasks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from kd_core import Backend
from kd_core.signals import Forward
from kd_core.task import classification_outputs
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_vision.cil.heads import SeenClassesForward
from kd_vision.cil.metrics import accuracy_after_each_task, summary

__all__ = ["IncrementalClassifier", "IncrementalEvaluator", "accuracy_row", "task_accuracies"]


def task_accuracies(logits: torch.Tensor, labels: torch.Tensor, tasks: Sequence[Sequence[int]]) -> list[float]:
    """Accuracy on each task's samples among ``logits``/``labels``, predicting among the classes of all
    ``tasks`` (the others masked)."""
    predicted = SeenClassesForward([c for task in tasks for c in task]).mask(logits).argmax(-1)
    row = []
    for task in tasks:
        member = torch.isin(labels, torch.as_tensor(list(task), device=labels.device))
        row.append(float((predicted[member] == labels[member]).float().mean()) if member.any() else math.nan)
    return row


def accuracy_row(model: nn.Module, test: Dataset, tasks: Sequence[Sequence[int]], backend: Backend,
                 batch_size: int = 512) -> list[float]:
    """Accuracy on each task's test images, predicting among the classes of all ``tasks`` (no task id)."""
    batches = [backend.to_device(batch) for batch in DataLoader(test, batch_size=batch_size)]
    return task_accuracies(*classification_outputs(model, batches), tasks)


class IncrementalClassifier(nn.Module):
    """``net`` with its accuracy-matrix history: ``history[i, j]`` is the test accuracy on task j after task i
    (NaN where not yet earned)."""

    def __init__(self, net: nn.Module, num_tasks: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("history", torch.full((num_tasks, num_tasks), math.nan))

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def record(self, matrix: Sequence[Sequence[float]]) -> None:
        """Keep ``matrix`` (row i: i + 1 accuracies) as the history."""
        for i, row in enumerate(matrix):
            self.history[i, : len(row)] = torch.as_tensor(row, dtype=self.history.dtype, device=self.history.device)

    def rows(self) -> list[list[float]]:
        """The recorded rows, in order, up to the first one not recorded."""
        rows = []
        for i, row in enumerate(self.history.tolist()):
            if any(math.isnan(v) for v in row[: i + 1]):
                break
            rows.append(row[: i + 1])
        return rows


class IncrementalEvaluator:
    """``evaluator(model, batches, forward)`` for a class-incremental task over ``tasks`` (see the module doc)."""

    def __init__(self, tasks: Sequence[Sequence[int]]) -> None:
        self.tasks = [tuple(int(c) for c in task) for task in tasks]

    def metric_names(self) -> tuple[str, ...]:
        """Every metric it returns (all shown as percentages)."""
        return ("average_incremental_accuracy", "final_accuracy", "forgetting",
                *(f"accuracy_after_task{i + 1}" for i in range(len(self.tasks))))

    def __call__(self, model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward) -> dict[str, float]:
        logits, labels = classification_outputs(model, batches, forward)
        earlier = model.rows()[: len(self.tasks) - 1] if isinstance(model, IncrementalClassifier) else []
        if len(earlier) < len(self.tasks) - 1:  # no history: one fixed model after every step
            earlier = [task_accuracies(logits, labels, self.tasks[: i + 1]) for i in range(len(self.tasks) - 1)]
        matrix = [*earlier, task_accuracies(logits, labels, self.tasks)]
        after = accuracy_after_each_task(matrix)
        return {**summary(matrix), **{f"accuracy_after_task{i + 1}": a for i, a in enumerate(after)}}
