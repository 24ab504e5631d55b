"""A teacher-assistant (TAKD) arm for any study: teacher → assistant → student, each step Hinton KD.

Mirzadeh, Farajtabar, Li, Levine, Matsukawa and Ghasemzadeh, "Improved Knowledge Distillation via Teacher
Assistant", AAAI 2020 (arXiv:1902.03393). One assistant of intermediate size is distilled from the study's
teacher on the teacher's pool, once per study (seed 0, like the teacher) and cached like a teacher (keyed by
the task, the teacher, the assistant and the distillation settings); every seed's student is then distilled
from the frozen assistant through the arm's own phases. The assistant is scored on the test split and written
to ``assistant.json`` in the study's folder (:func:`assistant_section` turns it into a report section).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from kd_core.datacache import cached_model
from kd_core.engine import Phase
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from kd_core.report import markdown_table
from kd_core.signals import FrozenTeacher
from kd_core.study import Arm, ArmRun
from torch import nn

__all__ = ["ASSISTANT_FILE", "TeacherAssistant", "assistant_section", "takd_arm"]

#: Where the study's folder records the assistant (model, parameters, test metrics, cache note).
ASSISTANT_FILE = "assistant.json"
#: The assistant's folder inside the study's folder (its training run, when it is not read from the cache).
ASSISTANT_FOLDER = "takd-assistant"


@dataclass
class TeacherAssistant:
    """TAKD's assistant: ``build()`` makes it untrained, ``phases()`` distil it from the study's teacher.

    ``model(run)`` trains it on the first call (on the task's teacher pool, seed 0, batch ``batch_size``) or
    reads it from the teacher cache, and returns the same module on later calls. ``determinants``: everything
    besides the task's key and the parameter shapes that decides the assistant (its training, the teacher's
    training, the KD settings), for the cache key.
    """

    name: str
    build: Callable[[], nn.Module]
    phases: Callable[[], list[Phase]]
    batch_size: int
    determinants: dict[str, Any] = field(default_factory=dict)
    reuse: bool = True
    _model: nn.Module | None = field(default=None, init=False, repr=False)

    def model(self, run: ArmRun) -> nn.Module:
        """The trained assistant, on the study's device (trained or read from the cache once per study)."""
        if self._model is None:
            if run.teacher is None:
                raise ConfigError("teacher", "the study's teacher (TAKD distils its assistant from it)", None)
            self._model = self._train(run)
        return self._model

    def _train(self, run: ArmRun) -> nn.Module:
        study = run.study
        task = study.task

        def build() -> nn.Module:
            torch.manual_seed(0)
            return self.build()

        def train(model: nn.Module) -> nn.Module:
            sub = replace(run, name=ASSISTANT_FOLDER, seed=0, student=model, out=run.out.parent / ASSISTANT_FOLDER)
            return sub.train(self.phases(), FrozenTeacher(run.teacher), train=task.data.teacher_pool,
                             batch_size=self.batch_size)

        model, note = cached_model(build, train, f"{task.name}-takd-assistant", self.reuse, data=task.key,
                                   assistant=self.name, **self.determinants)
        model = model.to(study.backend.device)
        if study.backend.is_main:
            record = {"model": self.name, "params": count_parameters(model), "source": note,
                      "test": study.score(model, study.test_batches())}
            (run.out.parent / ASSISTANT_FILE).write_text(json.dumps(record, indent=1))
        return model


def takd_arm(assistant: TeacherAssistant, phases: Callable[[], list[Phase]], *, batch_size: int,
             description: str, role: str = "baseline", distiller: Mapping[str, Any] | None = None) -> Arm:
    """The TAKD arm: the student trains through ``phases()`` (a KD objective) from the frozen ``assistant``."""

    def fit(run: ArmRun) -> nn.Module:
        return run.train(phases(), FrozenTeacher(assistant.model(run)))

    return Arm(phases, role=role, batch_size=batch_size, fit=fit, description=description,  # type: ignore[arg-type]
               distiller=dict(distiller or {}))


def assistant_section(run: Path, headline: str = "accuracy") -> list[tuple[str, str]]:
    """A report section on the assistant (``assistant.json`` in the study folder ``run``), or none if absent."""
    path = Path(run) / ASSISTANT_FILE
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    value = record["test"].get(headline, float("nan"))
    shown = f"{100 * value:.2f} %" if headline in ("accuracy", "ece") else f"{value:.4g}"
    row = {"assistant": record["model"], "params": f"{record['params']:,}", f"test {headline}": shown,
           "source": record["source"]}
    text = ("TAKD's assistant, distilled once from the teacher on the teacher's pool (seed 0); every TAKD "
            "student is distilled from it.\n\n" + markdown_table([row]))
    return [("TAKD teacher assistant (test split)", text)]
