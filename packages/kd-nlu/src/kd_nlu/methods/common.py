"""Pieces every NLU plan shares: training an encoder through kd-core, a cached model, evaluation, run folders.

A method module builds its objective(s) and phases; ``fit_text`` runs them through ``Distiller`` with
``TextCollator`` and ``encoder_forward`` (there is no other training loop). ``cached_model`` stores trained
weights under ``$KD_DATA_HOME/teachers`` keyed by a digest of everything that determines them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, Term, adamw, cosine_lr
from kd_core.datacache import cached_model, data_home, digest  # noqa: F401 - re-exported
from kd_core.engine import Callback
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import (
    CalibrationResult,
    classification_metrics,
    expected_calibration_error,
    format_mean_std,
    mean_std,
)
from kd_core.plots import plot_bars
from kd_core.progress import ProgressCallback
from kd_core.recipes import (
    Method,
    RunContext,
    open_run,  # noqa: F401 - re-exported
)
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.signals import CachedTeacher, Forward, Signal
from kd_core.study import Arm, ArmRun
from kd_core.study_recipe import StudyPlan, StudyRecipe
from kd_core.taps import LOGITS, select_logits
from kd_core.task import Task
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_nlu.data.text import TextCollator, encoder_forward
from kd_nlu.tasks import TextModel

if TYPE_CHECKING:
    from kd_nlu.models.teacher import GlossTeacherConfig


class Strict(BaseModel):
    """A config section that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


class TrainConfig(Strict):
    """How one encoder is trained: epochs, AdamW learning rate and weight decay, batch size."""

    epochs: Annotated[int, Field(gt=0)]
    lr: Annotated[float, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 32
    weight_decay: Annotated[float, Field(ge=0)] = 0.01


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
    """α·τ²·KL(p_t^τ ‖ p_s^τ) + (1 − α)·CE; ``sample_weight`` (a ``SampleWeights`` provider) weighs the KD term."""
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=kd.alpha, temperature=kd.temperature,
             sample_weight=sample_weight),
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - kd.alpha))


def cached_teacher(folder: str = "teacher-outputs") -> Callable[[nn.Module, Path], Signal]:
    """An ``Arm.signal`` factory: the frozen teacher's logits over the train split, computed once into
    ``<study directory>/<folder>`` and served to every arm and seed (exact: text inputs are not augmented)."""

    def signal(teacher: nn.Module, workdir: Path) -> Signal:
        return CachedTeacher(FrozenTeacher(teacher), Path(workdir) / folder)

    return signal


def train_arm(run: ArmRun, phases: Sequence[Phase], signal: Signal | None = None, callbacks: Sequence[Callback] = (),
              train: Dataset | None = None, **options: Any) -> nn.Module:
    """Train ``run.student`` through ``phases`` in ``run.out`` (for an ``Arm.fit``): the study's ``Distiller`` with
    ``callbacks`` added to the arm's, on the task's train split (or ``train``) with its val split."""
    extra = list(callbacks)
    arm = dataclasses.replace(run.arm, callbacks=lambda: [*run.arm.callbacks(), *extra])
    distiller = dataclasses.replace(run, arm=arm).distiller(phases, signal, **options)
    data = run.study.task.data
    distiller.fit(data.train if train is None else train, data.val, out=run.out, config=run.config(),
                  resume=run.resume and (run.out / "config.yaml").is_file())
    return distiller.student


def text_study_task(config: Any, context: RunContext) -> Task:
    """The text task of a recipe's ``data``, ``teacher`` and ``student`` fields (``student.text_model()`` when the
    student section is not a ``TextModel`` itself)."""
    from kd_nlu.tasks import text_task

    student = config.student if isinstance(config.student, TextModel) else config.student.text_model()
    return text_task(config.data, config.teacher, student, context)


Sections = Callable[[Any, dict[str, Any], Path], list[tuple[str, str]]]


@dataclass
class SectionsPlan(StudyPlan):
    """A ``StudyPlan`` whose report gets the method's own sections (``extra(config, results, run_dir)``) before
    "Reproduce", e.g. DCS's weight statistics or the policy's selection rates."""

    extra: Sections | None = None

    def run(self, context: RunContext) -> Path:
        """Run the study, then add the method's sections to ``report.md``."""
        run = Path(super().run(context))
        if self.extra is not None and (run / "results.json").is_file():  # the main process wrote the results
            results = json.loads((run / "results.json").read_text())
            body = "".join(f"## {heading}\n\n{text.rstrip()}\n\n"
                           for heading, text in self.extra(self.config, results, run))
            report = (run / "report.md").read_text()
            (run / "report.md").write_text(report.replace("## Reproduce", body + "## Reproduce", 1))
        return run


def text_method(name: str, config_model: type[StudyRecipe], *, arms: Callable[[Any, Task], dict[str, Arm]],
                title: Callable[[Any, Task], str], summary: str, notes: Callable[[Any, Task], str] | None = None,
                compare: Callable[[Any, dict[str, Arm]], list[tuple[str, str]] | None] | None = None,
                extra: Sections | None = None, task: Callable[[Any, RunContext], Task] = text_study_task,
                plan: type[SectionsPlan] = SectionsPlan) -> Method:
    """A registered kd-nlu study method over ``task`` (default: the recipe's text task), its teacher trained by
    ``config.teacher.train_spec()`` when it comes without weights."""
    def build(config: Any) -> SectionsPlan:
        return plan(config=config, task=task, arms=arms, title=title, notes=notes, compare=compare, extra=extra,
                    teacher_training=lambda c: c.teacher.train_spec())

    return Method(name=name, config_model=config_model, build=build, domain="nlu", recipes=RECIPES, summary=summary)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing."""
    return json.loads(path.read_text()) if path.is_file() else None


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


# -- plan-era text-KD pieces: rl-multi-teacher still uses them until it is ported -----------------------------


class StudentSpec(Strict):
    """The student: MiniLM's pretrained encoder with a new head (``minilm``), or a smaller random BERT
    with the teacher's vocabulary (``random``: ``layers``, ``hidden``, ``intermediate``, ``heads``)."""

    init: Literal["minilm", "random"] = "random"
    layers: Annotated[int, Field(gt=0)] = 2
    hidden: Annotated[int, Field(gt=0)] = 192
    intermediate: Annotated[int, Field(gt=0)] = 768
    heads: Annotated[int, Field(gt=0)] | None = None
    train: TrainConfig = TrainConfig(epochs=8, lr=5e-4, batch_size=32)


@dataclass
class TextResources:
    """What a text-KD plan trains on: tokenised splits, class count, frozen teachers and a student builder.

    Plans load the gloss task and MiniLM teachers by default; tests pass tiny ones instead.
    """

    splits: dict[str, Dataset]
    num_classes: int
    teachers: dict[str, nn.Module]
    build_student: Callable[[int], nn.Module]
    pad_token_id: int = 0
    notes: dict[str, str] = field(default_factory=dict)


def student_builder(spec: StudentSpec, teacher: nn.Module, num_classes: int) -> Callable[[int], nn.Module]:
    """``seed -> fresh student`` for ``spec`` (MiniLM from its files, or a random BERT shaped after ``teacher``)."""

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        if spec.init == "minilm":
            from kd_nlu.models.teacher import load_minilm

            return load_minilm(num_classes)[0]
        from kd_nlu.models.student import build_student, student_config

        return build_student(student_config(teacher.config, layers=spec.layers, hidden=spec.hidden,
                                            intermediate=spec.intermediate, heads=spec.heads,
                                            num_labels=num_classes))

    return build


def gloss_resources(teacher_config: GlossTeacherConfig, student: StudentSpec, backend: Backend, progress: Any = None,
                    out: Path | None = None, reuse: bool = True) -> TextResources:
    """The gloss task and N1's cached fine-tuned MiniLM teacher (``kd_nlu.models.teacher.gloss_teacher``)."""
    from kd_nlu.models.teacher import gloss_teacher

    t = gloss_teacher(teacher_config, out=out, backend=backend, progress=progress, reuse=reuse)
    classes = len(t.task.label_names)
    return TextResources(splits=t.splits, num_classes=classes, teachers={"minilm": t.model},
                         build_student=student_builder(student, t.model, classes),
                         pad_token_id=int(t.tokenizer.pad_token_id), notes={"minilm": t.note})


def cached_signal(model: nn.Module, train: Dataset, directory: Path, backend: Backend, pad_token_id: int = 0,
                  batch_size: int = 128) -> CachedTeacher:
    """The frozen ``model``'s logits over ``train`` computed once into ``directory`` and served from there."""
    from kd_core.data import IndexedDataset

    signal = CachedTeacher(FrozenTeacher(model.to(backend.device)), directory)
    signal.bind([LOGITS], encoder_forward)
    if not signal.exists():
        batches = text_loader(IndexedDataset(train), batch_size, pad_token_id)
        signal.build(backend.to_device(b) for b in batches)
    return signal


def fit_with_callbacks(model: nn.Module, phases: Sequence[Phase], resources: TextResources, out: Path,
                       backend: Backend, *, seed: int, batch_size: int, config: dict[str, Any], label: str,
                       progress: Any = None, teacher: Signal | None = None, callbacks: Sequence[Callback] = (),
                       forward: Forward = encoder_forward, resume: bool = False, **options: Any) -> nn.Module:
    """``common.fit_text`` with extra callbacks and forward (which ``fit_text`` does not take yet)."""
    distiller = Distiller(model, phases=phases, teacher=teacher, backend=backend,
                          callbacks=[ProgressCallback(label, progress), *callbacks], batch_size=batch_size,
                          seed=seed, forward=forward, collate=TextCollator(resources.pad_token_id), **options)
    distiller.fit(resources.splits["train"], resources.splits.get("val"), out=out, config=config,
                  resume=resume and (Path(out) / "config.yaml").is_file())
    return distiller.student


def score_arms(students: Mapping[str, Mapping[int, nn.Module]], test: Dataset, backend: Backend,
               pad_token_id: int) -> dict[str, dict[str, dict[str, float]]]:
    """arm -> seed -> test metrics (accuracy, NLL, ECE, Brier)."""
    return {arm: {str(seed): classifier_metrics(model, test, backend, pad_token_id)[0]
                  for seed, model in by_seed.items()} for arm, by_seed in students.items()}


def arm_rows(scores: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str]) -> list[dict]:
    """Report rows: accuracy, ECE and NLL as mean ± std over seeds, one row per arm."""
    rows = []
    for arm, by_seed in scores.items():
        values = list(by_seed.values())
        rows.append({"arm": labels.get(arm, arm),
                     "accuracy %": format_mean_std([100 * v["accuracy"] for v in values]),
                     "ECE %": format_mean_std([100 * v["ece"] for v in values]),
                     "NLL": format_mean_std([v["nll"] for v in values], digits=3)})
    return rows


def arm_report(top: RunDir, title: str, summary: str, rows: list[dict], context: RunContext,
               extra: Sequence[tuple[str, str]] = ()) -> Path:
    """The report of a multi-arm text-KD run: summary, the arms' table (``arm_rows``), ``extra`` sections, the
    command, and a bar chart of the mean test accuracy per arm."""
    acc = plot_bars({r["arm"]: float(str(r["accuracy %"]).split(" ")[0]) for r in rows},
                    top.plots / "accuracy.png", title="Test accuracy", ylabel="accuracy (%)")
    return write_report(top, title, [
        ("Summary", summary), ("Results (test split, mean ± std over seeds)", markdown_table(rows)), *extra,
        ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}.\n")],
        plots=[("Test accuracy", acc)])


def mean_accuracy(scores: Mapping[str, Mapping[str, float]]) -> float:
    """Mean test accuracy (%) over seeds."""
    return 100 * mean_std([v["accuracy"] for v in scores.values()])[0]


def evaluate_arms(run: Path, config: Any, resources: TextResources | None, device: str = "auto") -> dict[str, float]:
    """Test metrics of every arm's final student (``<arm>-seed<seed>/checkpoints/final.safetensors``) in ``run``.

    ``config`` is a text-KD recipe config with ``teacher``, ``student``, ``arms`` and ``seeds``; the gloss task
    and the cached teacher are loaded when ``resources`` is None (never retrained: a missing cache is an error).
    """
    from kd_core.checkpoint import load_weights
    from kd_core.errors import RunDirError

    backend = Backend(device=device)
    missing = [f"{arm}-seed{seed}" for arm in config.arms for seed in config.seeds
               if not (Path(run) / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors").is_file()]
    if missing:
        raise RunDirError("RUN", "a finished run with every arm's final checkpoint", f"{run} lacks {missing}")
    res = resources or gloss_resources(config.teacher, config.student, backend, reuse=True)
    scores: dict[str, float] = {}
    for arm in config.arms:
        for seed in config.seeds:
            model = load_weights(res.build_student(seed),
                                 Path(run) / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors")
            metrics, _ = classifier_metrics(model.to(backend.device), res.splits["test"], backend, res.pad_token_id)
            scores.update({f"{arm}/seed{seed}/{k}": v for k, v in metrics.items() if k in ("accuracy", "ece", "nll")})
    return scores
