"""One class-incremental run: a model through every task of the stream for one variant and seed.

Before anything trains, a variant that replays generated images checks its generator against the
``ImageGenerator`` protocol and the data (image shape, known classes) and probes one generated batch,
so a generator of the wrong resolution or one that returns classes it was not asked for is refused
with a ``ConfigError`` first. Then, for each task t: draw S_{<t} (``generated_per_class`` images of each
old class, checked again), train through ``Distiller`` (``trainer``, by default
:func:`kd_vision.cil.training.train_task`; a Study passes one built on its ``ArmRun.distiller``), add the
task's exemplars to the memory, and evaluate on every task seen so far (one accuracy-matrix row). A variant
that classifies by the nearest mean of exemplars scores each row with the class means of the memory under the
current network, and returns that classifier (a ``NearestMeanClassifier`` around the trained model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kd_core import Backend, Objective
from kd_core.errors import ConfigError
from kd_core.generators import ImageGenerator, check_generator, generate_checked
from torch import nn
from torch.utils.data import Dataset

from kd_vision.cil.evaluation import accuracy_row
from kd_vision.cil.memory import ExemplarMemory
from kd_vision.cil.metrics import summary
from kd_vision.cil.nme import NearestMeanClassifier
from kd_vision.cil.stream import class_subset
from kd_vision.cil.training import VARIANTS, task_dataset, task_objective, train_task
from kd_vision.data.digits import DigitsDataset
from kd_vision.methods.common import TrainConfig
from kd_vision.models import build_model

__all__ = ["StreamResult", "StreamSettings", "TaskTrainer", "run_stream"]

#: ``trainer(model, objective, dataset, seen, out, seed, config)`` trains ``model`` on one task (the classes
#: ``seen`` so far unmasked) through ``Distiller`` in ``out`` and returns it.
TaskTrainer = Callable[[nn.Module, Objective, Dataset, Sequence[int], Path, int, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class StreamSettings:
    """Everything a run needs besides data, generator, variant and seed."""

    train: TrainConfig
    memory_per_class: int = 5
    generated_per_class: int = 100
    kd_temperature: float = 2.0
    kd_weight: float = 1.0
    num_classes: int = 10


@dataclass
class StreamResult:
    """The accuracy matrix of one run, its summary metrics and the model after the last task."""

    variant: str
    seed: int
    tasks: list[list[int]]
    matrix: list[list[float]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: variant, seed, tasks, matrix and the metrics."""
        return {"variant": self.variant, "seed": self.seed, "tasks": self.tasks, "matrix": self.matrix,
                **summary(self.matrix)}


def _image_shape(dataset: DigitsDataset) -> tuple[int, ...]:
    return tuple(dataset[0]["input"].shape)


def run_stream(variant: str, tasks: Sequence[Sequence[int]], train: DigitsDataset, test: DigitsDataset,
               generator: ImageGenerator | None, settings: StreamSettings, seed: int, out: Path, backend: Backend,
               progress: Any = None, resume: bool = False, model: nn.Module | None = None,
               trainer: TaskTrainer | None = None) -> StreamResult:
    """Train one model through ``tasks`` with ``variant`` (A-D) and return its accuracy matrix."""
    spec = VARIANTS[variant]
    shape = _image_shape(train)
    if spec.generated:  # validate the generator before any training
        check_generator(generator, shape, [c for task in tasks for c in task])
        generate_checked(generator, list(tasks[0]), 1, seed, shape)
    if model is None:
        torch.manual_seed(seed)
        model = build_model(settings.train.model, num_classes=settings.num_classes)
    model = model.to(backend.device)
    memory = ExemplarMemory(settings.memory_per_class, seed=seed)
    result = StreamResult(variant, seed, [list(t) for t in tasks])
    for t, task in enumerate(tasks):
        old = [c for previous in tasks[:t] for c in previous]
        seen = [*old, *task]
        generated = None
        if spec.generated and old:
            generated = generate_checked(generator, old, settings.generated_per_class, seed * 1000 + t, shape)
        current = class_subset(train, task)
        dataset = task_dataset(spec, current, memory.dataset(), generated)
        objective = task_objective(spec, old, settings.kd_temperature, settings.kd_weight)
        config = {"variant": variant, "seed": seed, "task": t, "classes": list(task),
                  "train": settings.train.model_dump(), "samples": len(dataset)}
        if trainer is None:
            model, _ = train_task(model, objective, dataset, seen, settings.train, out / f"task{t}", backend,
                                  f"{variant} s{seed} t{t}", progress, seed=seed * 1000 + t, config=config,
                                  resume=resume)
        else:
            model = trainer(model, objective, dataset, seen, out / f"task{t}", seed * 1000 + t, config)
        if spec.memory:
            memory.add(current, task)
        scorer = _nearest_mean(model, memory, settings.num_classes) if spec.nme else model
        result.matrix.append(accuracy_row(scorer, test, tasks[: t + 1], backend))
        result.model = scorer
    return result


def _nearest_mean(model: nn.Module, memory: ExemplarMemory, num_classes: int) -> NearestMeanClassifier:
    """``model`` classified by the nearest mean of the exemplars in ``memory``."""
    exemplars = memory.dataset()
    if exemplars is None:
        raise ConfigError("arms", "a variant with an exemplar memory for the nearest-mean classifier", "no memory")
    device = next(model.parameters()).device
    return NearestMeanClassifier(model, num_classes).to(device).fit_means(exemplars)
