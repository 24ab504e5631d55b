"""Recipes that run a ``Study``: a method registers its config model, a task builder and its ``arms``; the
CLI (``kd-<domain> distill --recipe NAME``) then runs the study, and ``kd-<domain> eval RUN`` re-scores its
students. No method writes a plan, a seed loop or report code of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from kd_core.recipes import Method, RecipeConfig, RunContext, Seed
from kd_core.study import Arm, Study, TrainSpec
from kd_core.task import Task

__all__ = ["StudyPlan", "StudyRecipe", "study_method"]

TaskBuilder = Callable[[Any, RunContext], Task]
ArmsBuilder = Callable[[Any, Task], dict[str, Arm]]


class StudyRecipe(RecipeConfig):
    """Fields every study recipe has: the paired seeds, whether a cached teacher may be reused, and how many
    timed forward passes measure each model's CPU latency (0: none)."""

    seeds: Annotated[list[Seed], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True
    latency_iterations: Annotated[int, Field(ge=0)] = 50


@dataclass
class StudyPlan:
    """A validated recipe, ready to run as a ``Study`` (what ``Method.build`` returns for study methods)."""

    config: StudyRecipe
    task: TaskBuilder
    arms: ArmsBuilder
    title: Callable[[Any, Task], str]
    teacher_training: Callable[[Any], TrainSpec | None]
    notes: Callable[[Any, Task], str] | None = None
    compare: Callable[[Any, dict[str, Arm]], list[tuple[str, str]] | None] | None = None
    sections: Callable[[Any, dict[str, Any], Path], list[tuple[str, str]]] | None = None

    def study(self, context: RunContext, progress: Any = None) -> Study:
        """The study this recipe describes, with ``context``'s device and precision."""
        from kd_core.backends import Backend

        task = self.task(self.config, context)
        arms = self.arms(self.config, task)
        return Study(task, arms, self.config.seeds, title=self.title(self.config, task),
                     compare=self.compare(self.config, arms) if self.compare else None,
                     teacher_training=self.teacher_training(self.config),
                     backend=Backend(device=context.device, precision=context.precision),
                     reuse_teacher=self.config.reuse_teacher, latency_iterations=self.config.latency_iterations,
                     config={"recipe": self.config.model_dump(), "precision": context.precision,
                             "device": context.device},
                     notes=self.notes(self.config, task) if self.notes else "", progress=progress,
                     sections=(lambda results, run: self.sections(self.config, results, run)) if self.sections
                     else None)

    def run(self, context: RunContext) -> Path:
        """Run the study under ``context.out``; return the run directory."""
        from kd_core.progress import progress_bar

        with progress_bar() as progress:
            study = self.study(context, progress)
            return study.run(context.out, resume=context.resume).run.path

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """The headline metric of every final student of a finished run, on the test split."""
        study = self.study(RunContext(out=Path(run), device=device))
        scores = {}
        test = study.test_batches()
        for arm in study.arms:
            for seed in study.seeds:
                model = study.load_student(run, arm, seed).to(study.backend.device)
                scores[f"{arm}/seed{seed}/{study.task.headline}"] = study.score(model, test)[study.task.headline]
        return scores


def study_method(name: str, config_model: type[StudyRecipe], *, task: TaskBuilder, arms: ArmsBuilder,
                 title: Callable[[Any, Task], str], teacher_training: Callable[[Any], TrainSpec | None],
                 domain: str, recipes: Path | None = None, summary: str = "",
                 notes: Callable[[Any, Task], str] | None = None,
                 compare: Callable[[Any, dict[str, Arm]], list[tuple[str, str]] | None] | None = None,
                 sections: Callable[[Any, dict[str, Any], Path], list[tuple[str, str]]] | None = None) -> Method:
    """A registered ``Method`` whose recipes run as a ``Study`` of ``arms(config, task(config, context))``.

    ``compare(config, arms)`` may name the arm pairs to compare (None: the study's default pairs);
    ``sections(config, results, run_dir)`` may add report sections (see ``Study``)."""
    return Method(name=name, config_model=config_model, domain=domain, recipes=recipes, summary=summary,
                  build=lambda config: StudyPlan(config, task, arms, title, teacher_training, notes, compare,
                                                 sections))
