"""DCS on the WordNet gloss task: a fine-tuned MiniLM teacher corrects a same-architecture student.

Amara, Jain and Chadha, "Dynamic Corrective Self-Distillation for Better Fine-Tuning of Pretrained Models",
arXiv:2312.07028 (2023); the weight rule is our reconstruction (see ``kd_core.sample_weights``). The student
minimises, per mini-batch,
Σ w_i [(1 − λ)·CE(y_i, p_S) + λ·τ²·KL(p_T^τ ‖ p_S^τ)] / Σ w_i with boosting-style per-sample weights w_i that
``kd_core.sample_weights.CorrectiveWeights`` raises where student and teacher disagree, every iteration.

Arms, each from the same initialisation per seed and with the same epochs: ``finetune`` (cross-entropy only),
``self-kd`` (the same KD objective with uniform weights) and ``dcs``. The teacher is MiniLM fine-tuned on the
same (small: DCS targets low-resource fine-tuning) training split and stays fixed; its logits are computed
once and served from a ``CachedTeacher``. By default the student is MiniLM too (``student.init: minilm``), as
in the paper's self-distillation from one pretrained checkpoint.

The section below "shared text-KD pieces" is used by this helper's three methods (``dcs``,
``rl-multi-teacher``, ``annealing-kd``); it belongs in ``kd_nlu.methods.common`` once merged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Distiller, FrozenTeacher
from kd_core.engine import Callback, Phase
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import format_mean_std, mean_std
from kd_core.objective import Objective, Term
from kd_core.plots import plot_bars
from kd_core.progress import ProgressCallback, console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.sample_weights import CorrectiveWeights
from kd_core.signals import CachedTeacher, Forward, Signal
from kd_core.taps import LOGITS
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from kd_nlu.data.text import TextCollator, encoder_forward
from kd_nlu.methods.common import (
    Strict,
    TrainConfig,
    classifier_metrics,
    open_run,
    single_phase,
    supervised_objective,
    text_loader,
)
from kd_nlu.models.teacher import GlossDataConfig, GlossTeacherConfig

# -- shared text-KD pieces (rl-multi-teacher and annealing-kd import these) ---------------------------------


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


# -- DCS ------------------------------------------------------------------------------------------------------

DCSArm = Literal["finetune", "self-kd", "dcs"]
DCS_LABELS = {"finetune": "fine-tune (CE)", "self-kd": "self-distillation, uniform weights",
              "dcs": "DCS (corrective weights)"}


def _default_dcs_teacher() -> GlossTeacherConfig:
    return GlossTeacherConfig(data=GlossDataConfig(train_size=500, val_size=400, test_size=600),
                              train=TrainConfig(epochs=6, lr=1e-4, batch_size=32))


class DCSSection(Strict):
    """λ (KD weight), τ, when the weights update, their cap and the discordance kind."""

    lam: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 2.0
    every: Literal["step", "epoch"] = "step"
    cap: Annotated[float, Field(ge=1)] = 10.0
    soft: bool = False


class DCSConfig(RecipeConfig):
    """The ``dcs`` recipe. ``teacher`` is N1's ``GlossTeacherConfig`` (its ``data`` is also the students' data)."""

    method: Literal["dcs"] = "dcs"
    teacher: GlossTeacherConfig = Field(default_factory=_default_dcs_teacher)
    student: StudentSpec = StudentSpec(init="minilm", train=TrainConfig(epochs=6, lr=1e-4, batch_size=32))
    dcs: DCSSection = DCSSection()
    arms: Annotated[list[DCSArm], Field(min_length=1)] = Field(default_factory=lambda: ["finetune", "self-kd", "dcs"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> DCSConfig:
        if len(set(self.arms)) != len(self.arms) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"arms and seeds must not repeat, received {self.arms} and {self.seeds}")
        return self


def dcs_objective(section: DCSSection, weights: CorrectiveWeights | None) -> Objective:
    """(1 − λ)·CE + λ·τ²·KL, per sample weighted by ``weights`` (uniform when None), plus a logged discordance."""
    terms = [Term("kd", kl_divergence, teacher=LOGITS, weight=section.lam, sample_weight=weights,
                  temperature=section.temperature),
             Term("ce", cross_entropy, target="label", weight=1 - section.lam, sample_weight=weights)]
    if weights is not None:
        terms.append(weights.observer())
    return Objective(*terms)


class DCSPlan:
    """Teacher once; every arm for every seed; test metrics and a report."""

    def __init__(self, config: DCSConfig, resources: TextResources | None = None) -> None:
        self.config = config
        self.resources = resources

    def _resources(self, backend: Backend, progress: Any, top: Path) -> TextResources:
        if self.resources is None:
            self.resources = gloss_resources(self.config.teacher, self.config.student, backend, progress,
                                             top / "teacher", self.config.reuse_teacher)
        return self.resources

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of every arm's final student in a finished run (``kd-nlu eval RUN``)."""
        return evaluate_arms(run, self.config, self.resources, device)

    def train_arm(self, arm: str, seed: int, res: TextResources, signal: Signal | None, out: Path,
                  backend: Backend, progress: Any = None, resume: bool = False) -> tuple[nn.Module, list[dict]]:
        """One student of ``arm``; returns it and the DCS weight history (empty for other arms)."""
        c = self.config
        weights = CorrectiveWeights(len(res.splits["train"]), every=c.dcs.every, cap=c.dcs.cap,
                                    soft=c.dcs.soft) if arm == "dcs" else None
        objective = supervised_objective() if arm == "finetune" else dcs_objective(c.dcs, weights)
        model = fit_with_callbacks(
            res.build_student(seed), single_phase(objective, c.student.train), res, out, backend, seed=seed,
            batch_size=c.student.train.batch_size, config={"recipe": c.model_dump(), "arm": arm, "seed": seed},
            label=f"{arm} s{seed}", progress=progress, teacher=signal if arm != "finetune" else None,
            callbacks=[weights] if weights is not None else [], resume=resume)
        return model, (weights.history if weights is not None else [])

    def run(self, context: RunContext) -> Path:
        """Train, compare and report under ``context.out``."""
        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seeds[0], backend)
        students: dict[str, dict[int, nn.Module]] = {arm: {} for arm in c.arms}
        histories: dict[int, list[dict]] = {}
        with progress_bar() as progress:
            res = self._resources(backend, progress, top.path)
            teacher = next(iter(res.teachers.values()))
            signal = cached_signal(teacher, res.splits["train"], top.path / "teacher-outputs", backend,
                                   res.pad_token_id)
            for seed in c.seeds:
                for arm in c.arms:
                    model, history = self.train_arm(arm, seed, res, signal, top.path / f"{arm}-seed{seed}",
                                                    backend, progress, context.resume)
                    students[arm][seed] = model
                    if history:
                        histories[seed] = history
        console.print("evaluating on the test split")
        scores = score_arms(students, res.splits["test"], backend, res.pad_token_id)
        teacher_scores = classifier_metrics(teacher, res.splits["test"], backend, res.pad_token_id)[0]
        results = {"teacher": teacher_scores, "seeds": scores, "dcs_updates": {str(k): v for k, v in histories.items()}}
        top.write_json("results.json", results)
        self._report(top, results, res, context)
        return top.path

    def _report(self, top: RunDir, results: dict, res: TextResources, context: RunContext) -> Path:
        c = self.config
        rows = [{"arm": "teacher (fine-tuned)", "accuracy %": f"{100 * results['teacher']['accuracy']:.2f}",
                 "ECE %": f"{100 * results['teacher']['ece']:.2f}", "NLL": f"{results['teacher']['nll']:.3f}"}]
        rows += arm_rows(results["seeds"], DCS_LABELS)
        means = {a: mean_accuracy(s) for a, s in results["seeds"].items()}
        order = " ≥ ".join(sorted(means, key=means.get, reverse=True))
        updates = [u for h in results["dcs_updates"].values() for u in h]
        weight_note = ""
        if updates:
            epsilon = sum(u["epsilon"] for u in updates) / len(updates)
            weight_note = (f" Over {len(updates)} weight updates, ε averaged {epsilon:.3f}"
                           f" and the largest weight reached {max(u['max_weight'] for u in updates):.2f}× the mean.")
        summary = (f"Mean test accuracy order: **{order}** (the paper expects dcs ≥ self-kd ≥ finetune). "
                   f"λ = {c.dcs.lam}, τ = {c.dcs.temperature}, weights updated every {c.dcs.every}, cap "
                   f"{c.dcs.cap}.{weight_note}\n\nTeacher: {'; '.join(res.notes.values()) or 'given'}. "
                   f"Student: {c.student.init}, {c.student.train.epochs} epochs, AdamW lr {c.student.train.lr}; "
                   f"train {len(res.splits['train'])} / test {len(res.splits['test'])} texts.\n")
        return arm_report(top, "DCS on the WordNet gloss task", summary, rows, context)


def build(config: DCSConfig) -> DCSPlan:
    """The plan for a validated ``dcs`` config."""
    return DCSPlan(config)


METHOD = Method(name="dcs", config_model=DCSConfig, build=build, domain="nlu",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="DCS: boosting-style corrective per-sample weights for self-distillation (gloss task)")
