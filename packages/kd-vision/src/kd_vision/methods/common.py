"""Pieces every vision plan shares: training one model through kd-core, a cached teacher, costs, calibration.

A method module builds its objective(s) and phases; these helpers run them through ``Distiller`` (there
is no other training loop), cache trained teachers under ``$KD_DATA_HOME/teachers`` keyed by everything
that determines them, and measure what reports show (parameters, MACs, CPU latency, ECE).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, adamw, cosine_lr
from kd_core.datacache import cached_model, data_home  # noqa: F401 - re-exported
from kd_core.losses import cross_entropy
from kd_core.metrics import CalibrationResult, count_macs, count_parameters, expected_calibration_error, measure_latency
from kd_core.objective import Term
from kd_core.progress import ProgressCallback
from kd_core.recipes import (
    open_run,  # noqa: F401 - re-exported
)
from kd_core.signals import Signal
from kd_core.study import TrainSpec
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from kd_vision.data.digits import DigitsDataset, make_splits


class Strict(BaseModel):
    """A config section that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


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




def model_cost(model: nn.Module, example: torch.Tensor, latency_iterations: int = 50) -> dict[str, float]:
    """Parameters, MACs and CPU latency (p50, batch of ``example``) of a copy of ``model`` on CPU."""
    cpu_model = copy.deepcopy(model).cpu().eval()
    latency = measure_latency(cpu_model, example.cpu(), warmup=10, iterations=latency_iterations)
    return {"params": count_parameters(cpu_model), "macs": count_macs(cpu_model, example.cpu()),
            "latency_ms_p50": latency.p50_ms}


def calibration(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]]) -> CalibrationResult:
    """ECE (15 bins) and reliability-diagram data of ``model`` over ``batches`` (``input``, ``label``)."""
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(b["input"]).float().cpu() for b in batches])
        labels = torch.cat([b["label"].cpu() for b in batches])
    return expected_calibration_error(logits, labels)



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


class DataConfig(Strict):
    """Which digits, and how many for each split (methods not yet ported to ``kd_vision.tasks``).

    ``teacher_train_size`` (default: ``train_size``) lets the teacher learn from a larger labelled pool,
    as a pretrained teacher would have; the students (distilled and scratch alike) get the first
    ``train_size`` samples of that pool.
    """

    source: Literal["mnist5k", "sklearn8x8"] = "mnist5k"
    train_size: Annotated[int, Field(gt=0)] = 1000
    teacher_train_size: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _pool_holds_the_students_samples(self) -> DataConfig:
        if self.teacher_train_size is not None and self.teacher_train_size < self.train_size:
            raise ValueError(f"data.teacher_train_size must be at least data.train_size ({self.train_size}), "
                             f"received {self.teacher_train_size}")
        return self

    val_size: Annotated[int, Field(gt=0)] = 500
    test_size: Annotated[int, Field(gt=0)] = 2000

    def teacher_key(self) -> dict[str, Any]:
        """What the teacher's data depends on (its cache key): not the students' ``train_size`` once the
        teacher has its own pool, so that a sweep over student data sizes reuses one teacher."""
        return {"source": self.source, "teacher_pool": self.teacher_train_size or self.train_size,
                "val_size": self.val_size, "test_size": self.test_size}


def supervised_objective() -> Objective:
    """Cross-entropy on the labels alone."""
    return Objective(Term("ce", cross_entropy, student="logits", target="label"))
