"""Pieces the NLU methods share: config sections, objectives, signal factories, training and study plumbing.

Study methods (annealing-kd, dcs, rl-multi-teacher, ambiguity-*) are config + arms registered with
``text_method``: a ``StudyPlan`` runs their ``kd_core.study.Study`` over a text task (``text_study_task``)
and adds their own report sections (custom ``Arm.fit`` runs train through ``ArmRun.train``, teacher logits are
cached by ``kd_core.study.cached_teacher``); ``hinton_objective`` is kd-core's KD term with a recipe's τ and α.
Plan-style
methods (TinyBERT, teacher fine-tuning) use ``fit_text``, which runs ``Distiller`` with ``TextCollator`` and
``encoder_forward`` (there is no other training loop), and ``cached_model``, which stores trained weights under
``$KD_DATA_HOME/teachers`` keyed by a digest of everything that determines them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, Term, adamw, cosine_lr
from kd_core.datacache import cached_model  # noqa: F401 - re-exported (models.teacher, tests)
from kd_core.losses import cross_entropy
from kd_core.metrics import (
    CalibrationResult,
    classification_metrics,
    expected_calibration_error,
)
from kd_core.progress import ProgressCallback
from kd_core.recipes import Method, RunContext, Section
from kd_core.signals import Signal
from kd_core.study import Arm, TrainSpec
from kd_core.study_recipe import StudyPlan, StudyRecipe
from kd_core.taps import select_logits
from kd_core.task import Task
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_nlu.data.text import TextCollator, encoder_forward
from kd_nlu.tasks import TextModel

Strict = Section  # (the name the method configs use)


class TrainConfig(Strict):
    """How one encoder is trained: epochs, AdamW learning rate and weight decay, batch size."""

    epochs: Annotated[int, Field(gt=0)]
    lr: Annotated[float, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 32
    weight_decay: Annotated[float, Field(ge=0)] = 0.01

    def train_spec(self) -> TrainSpec:
        """The same settings as a ``kd_core.study.TrainSpec``."""
        return TrainSpec(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay)


def supervised_objective() -> Objective:
    """Cross-entropy on the labels alone."""
    return Objective(Term("ce", cross_entropy, student="logits", target="label"))


def single_phase(objective: Objective, train: TrainConfig, name: str = "train",
                 restore_best: bool = False) -> list[Phase]:
    """One phase of ``train.epochs`` with AdamW at ``train.lr`` and cosine decay."""
    return [Phase(name, objective, epochs=train.epochs, optimizer=adamw(train.lr, train.weight_decay),
                  scheduler=cosine_lr, restore_best=restore_best)]


def fit_text(model: nn.Module, phases: Sequence[Phase], train: Dataset, val: Dataset | None, out: Path,
             backend: Backend, *, seed: int, batch_size: int, config: dict[str, Any], label: str = "train",
             progress: Any = None, teacher: Signal | nn.Module | None = None, resume: bool = False,
             pad_token_id: int = 0, **distiller_options: Any) -> nn.Module:
    """Train ``model`` through ``phases`` with a ``Distiller`` in ``out``; return the trained model.

    Batches are padded by ``TextCollator(pad_token_id)`` and fed by ``encoder_forward``. ``teacher`` may
    be a signal or a plain module (wrapped in ``FrozenTeacher``).
    """
    signal = FrozenTeacher(teacher) if isinstance(teacher, nn.Module) else teacher
    options = {"forward": encoder_forward, "collate": TextCollator(pad_token_id), **distiller_options}
    distiller = Distiller(model, phases=phases, teacher=signal, backend=backend,
                          callbacks=[ProgressCallback(label, progress)], batch_size=batch_size, seed=seed, **options)
    distiller.fit(train, val, out=out, config=config, resume=resume and (Path(out) / "config.yaml").is_file())
    return distiller.student




def text_loader(dataset: Dataset, batch_size: int = 128, pad_token_id: int = 0) -> DataLoader:
    """Batches of ``dataset`` in order, padded by ``TextCollator``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=TextCollator(pad_token_id))


def predict_logits(model: nn.Module, dataset: Dataset, backend: Backend | None = None, batch_size: int = 128,
                   pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, labels)`` of ``model`` over ``dataset`` on CPU (labels ``None`` for unlabelled data)."""
    device = backend.device if backend is not None else next(model.parameters()).device
    model.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for batch in text_loader(dataset, batch_size, pad_token_id):
            moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            logits.append(select_logits(encoder_forward(model, moved)).float().cpu())
            if "label" in batch:
                labels.append(batch["label"].cpu())
    return torch.cat(logits), torch.cat(labels) if labels else None


def classifier_metrics(model: nn.Module, dataset: Dataset, backend: Backend | None = None,
                       pad_token_id: int = 0) -> tuple[dict[str, float], CalibrationResult]:
    """Accuracy, NLL, ECE (15 bins) and Brier of ``model`` over a labelled ``dataset``, and its reliability data."""
    logits, labels = predict_logits(model, dataset, backend, pad_token_id=pad_token_id)
    return classification_metrics(logits, labels), expected_calibration_error(logits, labels)


class KDSection(Strict):
    """A Hinton KD term's settings: temperature τ and the weight α of the KD term."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5


# -- pieces the study ports share (annealing-kd, dcs, rl-multi-teacher, ambiguity-*) -------------------------


def hinton_objective(kd: KDSection, sample_weight: Any = None) -> Objective:
    """``kd_core.objective.hinton_objective`` with the recipe's τ and α; ``sample_weight`` (a ``SampleWeights``
    provider) weighs the KD term."""
    from kd_core.objective import hinton_objective as hinton

    return hinton(kd.temperature, kd.alpha, sample_weight=sample_weight)


def text_study_task(config: Any, context: RunContext) -> Task:
    """The text task of a recipe's ``data``, ``teacher`` and ``student`` fields (``student.text_model()`` when the
    student section is not a ``TextModel`` itself)."""
    from kd_nlu.tasks import text_task

    student = config.student if isinstance(config.student, TextModel) else config.student.text_model()
    return text_task(config.data, config.teacher, student, context)


Sections = Callable[[Any, dict[str, Any], Path], list[tuple[str, str]]]


def text_method(name: str, config_model: type[StudyRecipe], *, arms: Callable[[Any, Task], dict[str, Arm]],
                title: Callable[[Any, Task], str], summary: str, notes: Callable[[Any, Task], str] | None = None,
                compare: Callable[[Any, dict[str, Arm]], list[tuple[str, str]] | None] | None = None,
                extra: Sections | None = None, task: Callable[[Any, RunContext], Task] = text_study_task,
                plan: type[StudyPlan] = StudyPlan,
                teacher_training: Callable[[Any], TrainSpec | None] = lambda c: c.teacher.train_spec()) -> Method:
    """A registered kd-nlu study method over ``task`` (default: the recipe's text task), its teacher trained by
    ``teacher_training(config)`` (default ``config.teacher.train_spec()``) when it comes without weights;
    ``extra(config, results, run_dir)`` adds the method's own report sections before "Reproduce"."""
    def build(config: Any) -> StudyPlan:
        return plan(config=config, task=task, arms=arms, title=title, notes=notes, compare=compare, sections=extra,
                    teacher_training=teacher_training)

    return Method(name=name, config_model=config_model, build=build, domain="nlu", recipes=RECIPES, summary=summary)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing."""
    return json.loads(path.read_text()) if path.is_file() else None


RECIPES = Path(__file__).resolve().parent.parent / "recipes"
