"""Tasks: what a method is applied to. A task gives the data splits, teacher and student builders, an
evaluator (a metrics dict, with its headline metric named) and an example input for costs and export.

Domains provide tasks: built-in demos (digits, glosses, ...) and generic ones built from specs a user
gives (``imagefolder:DIR``, ``csv:FILE``, ``tv:resnet18``, ``hf:DIR``, ``module:function``). A method never
builds data or models itself: it receives a ``Task`` and returns arms (``kd_core.study``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from kd_core.errors import ConfigError
from kd_core.signals import Forward, default_forward
from kd_core.taps import select_logits

Evaluator = Callable[[nn.Module, Iterable[Mapping[str, Any]], Forward], dict[str, float]]

__all__ = ["Splits", "Task", "classification_evaluator", "classification_outputs", "stratified_split"]


@dataclass
class Splits:
    """A task's datasets. ``teacher_train`` is the teacher's own (larger) pool, if it has one; the students
    train on ``train``. Items are dicts (``input``, ``label``, ...) that the task's ``collate`` batches."""

    train: Dataset
    val: Dataset
    test: Dataset
    teacher_train: Dataset | None = None

    @property
    def teacher_pool(self) -> Dataset:
        """What a teacher trained here learns from: ``teacher_train``, else ``train``."""
        return self.teacher_train if self.teacher_train is not None else self.train

    def sizes(self) -> dict[str, int]:
        """The number of items per split (for reports)."""
        sizes = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}  # type: ignore[arg-type]
        if self.teacher_train is not None:
            sizes["teacher_train"] = len(self.teacher_train)  # type: ignore[arg-type]
        return sizes


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, argument: str
                     ) -> dict[str, np.ndarray]:
    """Deterministic (seed 0) train/val/test positions, each class split in the same proportions; a class with
    fewer than 3 items is a ``ConfigError`` naming ``argument``."""
    rng = np.random.default_rng(0)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        pool = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(test_fraction * len(pool)))
        n_val = max(1, round(val_fraction * len(pool)))
        if len(pool) < n_test + n_val + 1:
            raise ConfigError(argument, "at least 3 images of every class (one each for train, val and test)",
                              f"{len(pool)} of class {c}")
        parts["test"].append(pool[:n_test])
        parts["val"].append(pool[n_test:n_test + n_val])
        parts["train"].append(pool[n_test + n_val:])
    return {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}


def classification_outputs(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                           forward: Forward = default_forward) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (float32, on the CPU) and labels of ``model`` over ``batches`` in eval mode."""
    logits, labels = [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in batches:
            logits.append(select_logits(forward(model, batch)).float().cpu())
            labels.append(batch["label"].cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def classification_evaluator(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                             forward: Forward = default_forward) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier of ``model`` over ``batches`` (with a ``label`` key): the default evaluator
    of a ``Task`` and of ``Distiller``."""
    from kd_core.metrics import classification_metrics

    return classification_metrics(*classification_outputs(model, batches, forward))


@dataclass
class Task:
    """One task: data, models and evaluation, all a ``Study`` needs besides the arms.

    - ``splits``: a function building the ``Splits`` (called once, on first use of ``data``);
    - ``teacher``: builds the teacher; with ``teacher_trained`` it comes with its weights and is used as
      it is (checked on val first), else a ``Study`` trains it and caches it under ``key``;
    - ``student(seed)``: builds a student, the same initialisation for the same seed (paired arms);
    - ``evaluator(model, batches, forward)``: a metrics dict; ``headline`` names the metric comparisons use,
      ``higher_is_better`` its direction; ``percent`` lists the metrics shown ×100 with a % unit;
      ``validator``: a cheaper evaluator for the validation split after every epoch (default: ``evaluator``);
      ``classifier``: whether models output class logits for a ``label`` (default: whether ``evaluator`` is
      ``classification_evaluator``; set it for a classifier scored by its own evaluator);
      ``teacher_evaluator``: how a study scores the teacher (default: ``evaluator``; a clean teacher of robust
      students need not be attacked);
      ``gate_metric``: the metric (higher is better) on which the teacher gate asks whether the teacher leads the
      scratch students (default: ``headline``; a clean teacher of robust students is judged on clean accuracy);
    - ``forward``/``collate``: how a batch is made and fed to a model;
    - ``key``: everything that determines the data and the teacher (its cache key);
    - ``description``: one line for reports; ``class_names`` for classification tasks;
    - ``save(model, directory)``: writes a trained student in the domain's own format besides the study's
      safetensors checkpoints (e.g. ``save_pretrained`` for Hugging Face models), or None;
    - ``student_field``/``teacher_field``: the recipe fields that name the models, for errors
      (``teacher.weights`` beside ``teacher.model`` for a teacher given with its weights).
    """

    name: str
    splits: Callable[[], Splits]
    teacher: Callable[[], nn.Module]
    student: Callable[[int], nn.Module]
    key: dict[str, Any]
    teacher_trained: bool = False
    evaluator: Evaluator = classification_evaluator
    validator: Evaluator | None = None
    teacher_evaluator: Evaluator | None = None
    headline: str = "accuracy"
    higher_is_better: bool = True
    gate_metric: str | None = None
    classifier: bool | None = None
    percent: tuple[str, ...] = ("accuracy", "ece")
    forward: Forward = default_forward
    collate: Callable[[list[Any]], Any] = default_collate
    description: str = ""
    class_names: list[str] | None = None
    save: Callable[[nn.Module, Path], Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    student_field: str = "student.model"
    teacher_field: str = "teacher.model"

    @cached_property
    def data(self) -> Splits:
        """The splits, built once."""
        splits = self.splits()
        for name, dataset in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            if len(dataset) == 0:  # type: ignore[arg-type]
                raise ConfigError(f"data ({self.name})", f"a non-empty {name} split", "0 items")
        return splits

    @property
    def epoch_evaluator(self) -> Evaluator:
        """What scores the validation split after every epoch: ``validator``, else ``evaluator``."""
        return self.validator or self.evaluator

    @property
    def classification(self) -> bool:
        """Whether the task is classification (logits and labels; reliability diagrams and the teacher's confidence
        check apply): ``classifier`` when set, else whether the evaluator is ``classification_evaluator``."""
        return self.classifier if self.classifier is not None else self.evaluator is classification_evaluator

    def example_batch(self, size: int = 1) -> Any:
        """A collated batch of the first ``size`` test items (for probes, MACs, latency and export)."""
        test = self.data.test
        return self.collate([test[i] for i in range(min(size, len(test)))])  # type: ignore[arg-type]

    def example_input(self) -> Any:
        """The model input of a one-item batch (``batch["input"]`` when the batch is a dict)."""
        batch = self.example_batch(1)
        return batch["input"] if isinstance(batch, Mapping) and "input" in batch else batch
