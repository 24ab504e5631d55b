"""Pieces vision methods share: strict config sections, ``TrainConfig``, training one model through kd-core
(``fit``, ``single_phase``; there is no other training loop) and the digit splits with a larger teacher pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, adamw, cosine_lr
from kd_core.progress import ProgressCallback
from kd_core.recipes import Section
from kd_core.signals import Signal
from kd_core.study import TrainSpec
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from kd_vision.data.digits import DigitsDataset, make_splits

Strict = Section  # (the name the method configs use)


class TrainConfig(Strict):
    """One model and how it is trained: a model spec (a kd-vision name, ``tv:NAME`` or
    ``package.module:function``), optional safetensors ``weights``, epochs, AdamW learning rate, batch size."""

    model: str
    epochs: Annotated[int, Field(gt=0)]
    lr: Annotated[float, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    weights: str | None = None

    def train_spec(self) -> TrainSpec:
        """Epochs, learning rate, batch size and weight decay as a ``kd_core.study.TrainSpec``."""
        return TrainSpec(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                         weight_decay=self.weight_decay)


def fit(model: nn.Module, phases: Sequence[Phase], splits: Mapping[str, Dataset], out: Path, backend: Backend,
        label: str, progress: Any, *, seed: int, batch_size: int, config: dict[str, Any],
        teacher: Signal | nn.Module | None = None, resume: bool = False, train_split: str = "train",
        **distiller_options: Any) -> nn.Module:
    """Train ``model`` through ``phases`` with a ``Distiller`` in ``out``; return the trained model.

    ``teacher`` may be a signal or a plain module (wrapped in ``FrozenTeacher``). ``progress`` is a
    rich progress bar (or None). ``resume`` continues ``out`` if it holds a run.
    """
    signal = FrozenTeacher(teacher) if isinstance(teacher, nn.Module) else teacher
    distiller = Distiller(model, phases=phases, teacher=signal, backend=backend,
                          callbacks=[ProgressCallback(label, progress)], batch_size=batch_size, seed=seed,
                          **distiller_options)
    distiller.fit(splits[train_split], splits.get("val"), out=out, config=config,
                  resume=resume and (out / "config.yaml").is_file())
    return distiller.student


def single_phase(objective: Objective, train: TrainConfig, name: str = "train") -> list[Phase]:
    """One phase of ``train.epochs`` with AdamW at ``train.lr`` and cosine decay."""
    return [Phase(name, objective, epochs=train.epochs, optimizer=adamw(train.lr, train.weight_decay),
                  scheduler=cosine_lr)]


def teacher_pool_splits(source: str, *, train_size: int, teacher_train_size: int | None, val_size: int,
                        test_size: int) -> dict[str, DigitsDataset]:
    """Digit splits where the teacher learns from a larger pool than the students.

    ``teacher_train`` holds ``teacher_train_size`` samples (default ``train_size``); ``train`` is its first
    ``train_size``; ``val`` and ``test`` are disjoint from both.
    """
    pool = teacher_train_size or train_size
    splits = make_splits(source, train_size=pool, val_size=val_size, test_size=test_size, seed=0)
    teacher_train = splits["train"]
    splits["teacher_train"] = teacher_train
    splits["train"] = DigitsDataset(teacher_train.images, teacher_train.labels, teacher_train.indices[:train_size])
    return splits
