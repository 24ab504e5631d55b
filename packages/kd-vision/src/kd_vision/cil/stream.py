"""The class-incremental task stream: a class order cut into tasks, and per-task views of a dataset.

Head choice: the classifier keeps a **fixed 10-way head**; classes not yet seen are masked out of the
logits (see :mod:`kd_vision.cil.heads`), which is equivalent to a head that grows by two outputs per task
while the model and its checkpoints keep one shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kd_core.errors import ConfigError

from kd_vision.data.digits import DigitsDataset

__all__ = ["class_subset", "make_tasks"]


def make_tasks(class_order: Sequence[int], classes_per_task: int) -> list[tuple[int, ...]]:
    """Cut ``class_order`` into consecutive tasks of ``classes_per_task`` classes each."""
    order = [int(c) for c in class_order]
    if len(set(order)) != len(order) or not order:
        raise ConfigError("class_order", "a non-empty list of distinct class ids", list(class_order))
    if isinstance(classes_per_task, bool) or not isinstance(classes_per_task, int) or classes_per_task < 1:
        raise ConfigError("classes_per_task", "an integer >= 1", classes_per_task)
    if len(order) % classes_per_task or len(order) // classes_per_task < 2:
        raise ConfigError("classes_per_task", f"a divisor of the {len(order)} classes giving at least 2 tasks",
                          classes_per_task)
    return [tuple(order[i:i + classes_per_task]) for i in range(0, len(order), classes_per_task)]


def class_subset(dataset: DigitsDataset, classes: Sequence[int]) -> DigitsDataset:
    """The samples of ``dataset`` whose label is in ``classes`` (same arrays, order kept)."""
    keep = np.isin(dataset.targets, np.asarray(list(classes)))
    if not keep.any():
        raise ConfigError("classes", "classes present in the dataset", list(classes))
    return DigitsDataset(dataset.images, dataset.labels, dataset.indices[keep])
