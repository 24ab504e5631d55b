"""One row of the accuracy matrix: per-task test accuracy of the model over all classes seen so far."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core import Backend
from torch import nn
from torch.utils.data import DataLoader

from kd_vision.cil.heads import SeenClassesForward
from kd_vision.cil.stream import class_subset
from kd_vision.data.digits import DigitsDataset

__all__ = ["accuracy_row"]


def accuracy_row(model: nn.Module, test: DigitsDataset, tasks: Sequence[Sequence[int]], backend: Backend,
                 batch_size: int = 512) -> list[float]:
    """Accuracy on each task's test images, predicting among the classes of all ``tasks`` (no task id)."""
    forward = SeenClassesForward([c for task in tasks for c in task])
    model.eval()
    row = []
    with torch.inference_mode():
        for task in tasks:
            correct = total = 0
            for batch in DataLoader(class_subset(test, task), batch_size=batch_size):
                batch = backend.to_device(batch)
                predicted = forward(model, batch).argmax(-1)
                correct += int((predicted == batch["label"]).sum())
                total += len(predicted)
            row.append(correct / total)
    return row
