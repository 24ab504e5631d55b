"""Hinton KD on real handwritten digits: the toolkit's main job and its smallest complete method.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531 (2015).
The student minimises α·T²·KL(p_t^T ‖ p_s^T) + (1 − α)·CE(y, p_s). The plan trains (or reuses) a CNN
teacher, distils a small CNN student from it, trains the same student from the same initialisation
without the teacher, and reports accuracy, ECE, NLL, parameters, MACs and CPU latency for all three,
mean ± std over seeds, with loss curves and reliability diagrams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Objective, Term
from kd_core.checkpoint import load_weights
from kd_core.engine import classification_evaluator
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import CalibrationResult, format_mean_std, mean_std
from kd_core.plots import plot_bars, plot_loss_curves, plot_reliability_diagram
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader

from kd_vision.data.digits import DigitsDataset
from kd_vision.methods.common import (
    Strict,
    TrainConfig,
    cached_model,
    calibration,
    fit,
    model_cost,
    open_run,
    single_phase,
    teacher_pool_splits,
)
from kd_vision.models import build_model


class DataConfig(Strict):
    """Which digits, and how many for each split.

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


class KDConfig(Strict):
    """The distillation loss: temperature T and the weight α of the KD term."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9


class HintonConfig(RecipeConfig):
    """The ``hinton-kd`` recipe."""

    method: Literal["hinton-kd"] = "hinton-kd"
    data: DataConfig = DataConfig()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    kd: KDConfig = KDConfig()
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True
    latency_iterations: Annotated[int, Field(gt=0)] = 50


def distill_objective(kd: KDConfig) -> Objective:
    """α·T²·KL(teacher ‖ student) + (1 − α)·CE."""
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=kd.alpha,
             temperature=kd.temperature, direction="forward"),
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - kd.alpha),
    )


def supervised_objective() -> Objective:
    """Cross-entropy on the labels alone."""
    return Objective(Term("ce", cross_entropy, student="logits", target="label"))


class HintonPlan:
    """Teacher, distilled student and scratch student over every seed, then a report."""

    def __init__(self, config: HintonConfig) -> None:
        self.config = config

    # -- pieces -----------------------------------------------------------------------------------
    def _splits(self) -> dict[str, DigitsDataset]:
        """``teacher_train`` (the teacher's pool), ``train`` (its first ``train_size``), ``val``, ``test``."""
        c = self.config.data
        return teacher_pool_splits(c.source, train_size=c.train_size, teacher_train_size=c.teacher_train_size,
                                   val_size=c.val_size, test_size=c.test_size)

    def _fit(self, model: nn.Module, train: TrainConfig, objective: Objective, seed: int, splits,
             out: Path, backend: Backend, label: str, progress, teacher: nn.Module | None = None,
             resume: bool = False) -> nn.Module:
        return fit(model, single_phase(objective, train), splits, out, backend, label, progress, seed=seed,
                   batch_size=train.batch_size, config={"recipe": self.config.model_dump(), "role": label,
                                                        "seed": seed}, teacher=teacher, resume=resume)

    def _teacher(self, splits, out: Path, backend: Backend, progress, resume: bool) -> tuple[nn.Module, str]:
        def build() -> nn.Module:
            torch.manual_seed(0)
            return build_model(self.config.teacher.model)

        def train(model: nn.Module) -> nn.Module:
            return self._fit(model, self.config.teacher, supervised_objective(), 0,
                             {**splits, "train": splits["teacher_train"]}, out / "teacher", backend, "teacher",
                             progress, resume=resume)

        teacher, note = cached_model(build, train, "digits", self.config.reuse_teacher,
                                       data=self.config.data.teacher_key(), teacher=self.config.teacher.model_dump())
        return teacher.to(backend.device), note

    def _student(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(self.config.student.model)

    # -- the whole plan -----------------------------------------------------------------------------
    def run(self, context: RunContext) -> Path:
        """Train, distil, compare and report under ``context.out``."""
        backend = Backend(device=context.device, precision=context.precision)
        recipe = self.config.model_dump()
        top = open_run(context, recipe, self.config.seeds[0], backend)
        splits = self._splits()
        with progress_bar() as progress:
            teacher, teacher_note = self._teacher(splits, top.path, backend, progress, context.resume)
            students: dict[str, dict[int, nn.Module]] = {"distilled": {}, "scratch": {}}
            for seed in self.config.seeds:
                students["distilled"][seed] = self._fit(
                    self._student(seed), self.config.student, distill_objective(self.config.kd), seed, splits,
                    top.path / f"distilled-seed{seed}", backend, f"distil s{seed}", progress, teacher=teacher,
                    resume=context.resume)
                students["scratch"][seed] = self._fit(
                    self._student(seed), self.config.student, supervised_objective(), seed, splits,
                    top.path / f"scratch-seed{seed}", backend, f"scratch s{seed}", progress,
                    resume=context.resume)
        console.print("evaluating on the test split")
        results = self._evaluate(teacher, students, splits["test"], backend)
        top.write_json("results.json", results)
        self._report(top, results, teacher_note, context)
        return top.path

    def _evaluate(self, teacher, students, test, backend: Backend) -> dict:
        loader = [backend.to_device(b) for b in DataLoader(test, batch_size=512)]
        example = loader[0]["input"][:1]

        def score(model: nn.Module) -> dict[str, float]:
            return classification_evaluator(model, loader, lambda m, b: m(b["input"]))

        cost = self.config.latency_iterations
        results: dict = {"teacher": {**score(teacher), **model_cost(teacher, example, cost)}, "seeds": {}}
        for role, by_seed in students.items():
            results["seeds"][role] = {str(s): score(m) for s, m in by_seed.items()}
            results[role] = model_cost(next(iter(by_seed.values())), example, self.config.latency_iterations)
        seed0 = self.config.seeds[0]
        results["calibration"] = {
            "teacher": calibration(teacher, loader).__dict__,
            "distilled": calibration(students["distilled"][seed0], loader).__dict__,
            "scratch": calibration(students["scratch"][seed0], loader).__dict__,
        }
        return results

    def _report(self, top: RunDir, results: dict, teacher_note: str, context: RunContext) -> Path:
        rows = [{"model": "teacher", "accuracy": f"{100 * results['teacher']['accuracy']:.2f}",
                 "ECE": f"{100 * results['teacher']['ece']:.2f}", "NLL": f"{results['teacher']['nll']:.3f}",
                 "params": results["teacher"]["params"], "MACs": results["teacher"]["macs"],
                 "CPU latency p50 (ms, batch 1)": f"{results['teacher']['latency_ms_p50']:.3f}"}]
        for role in ("distilled", "scratch"):
            per_seed = results["seeds"][role].values()
            rows.append({
                "model": f"{role} student",
                "accuracy": format_mean_std([100 * r["accuracy"] for r in per_seed]),
                "ECE": format_mean_std([100 * r["ece"] for r in per_seed]),
                "NLL": format_mean_std([r["nll"] for r in per_seed], digits=3),
                "params": results[role]["params"], "MACs": results[role]["macs"],
                "CPU latency p50 (ms, batch 1)": f"{results[role]['latency_ms_p50']:.3f}"})
        seeds = [str(s) for s in self.config.seeds]
        gains = [100 * (results["seeds"]["distilled"][s]["accuracy"] - results["seeds"]["scratch"][s]["accuracy"])
                 for s in seeds]
        gain_mean, gain_std = mean_std(gains)
        per_seed_rows = [{"seed": s, "distilled acc %": 100 * results["seeds"]["distilled"][s]["accuracy"],
                          "scratch acc %": 100 * results["seeds"]["scratch"][s]["accuracy"],
                          "gain (pts)": g} for s, g in zip(seeds, gains)]
        verdict = "beats" if gain_mean > 0 else "does not beat"
        c = self.config
        summary = (f"The distilled student **{verdict}** its from-scratch twin by "
                   f"**{gain_mean:+.2f} ± {gain_std:.2f}** accuracy points (mean ± std over {len(seeds)} seeds), "
                   f"with {results['teacher']['params'] / results['distilled']['params']:.0f}× fewer parameters "
                   f"than the teacher.\n\n"
                   f"Data: {c.data.source} (real MNIST digits), {c.data.train_size} train / {c.data.val_size} val / "
                   f"{c.data.test_size} test; the teacher learned from "
                   f"{c.data.teacher_train_size or c.data.train_size} train samples (a superset of the students'). "
                   f"KD: T = {c.kd.temperature}, α = {c.kd.alpha}. "
                   f"Student: {c.student.epochs} epochs, AdamW lr {c.student.lr}, cosine decay. "
                   f"Teacher: {teacher_note}. Metrics on the test split; ECE with 15 bins; each student is its "
                   f"last epoch.\n")
        plots_dir = top.plots
        curves = []
        for role in ("distilled", "scratch"):
            sub = RunDir(top.path / f"{role}-seed{seeds[0]}")
            curves += [{**r, "run": role} for r in sub.metrics() if "loss/total" in r]
        loss_png = plot_loss_curves(curves, plots_dir / "loss_curves.png", keys=["loss/total"])
        calib = {name: CalibrationResult(**value) for name, value in results["calibration"].items()}
        rel_png = plot_reliability_diagram(calib, plots_dir / "reliability.png")
        acc_png = plot_bars({r["model"]: float(str(r["accuracy"]).split(" ")[0]) for r in rows},
                            plots_dir / "accuracy.png", title="Test accuracy", ylabel="accuracy (%)")
        return write_report(top, "Hinton KD on real MNIST digits", [
            ("Summary", summary),
            ("Results (test split)", markdown_table(rows)),
            ("Per seed", markdown_table(per_seed_rows, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: "
                          f"{context.precision}. Environment in `env.json`, resolved recipe in `config.yaml`.\n"),
        ], plots=[(f"Training loss (seed {seeds[0]})", loss_png),
                  (f"Reliability diagrams (seed {seeds[0]})", rel_png),
                  ("Test accuracy", acc_png)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of the final students of a finished run."""
        backend = Backend(device=device)
        test = self._splits()["test"]
        loader = [backend.to_device(b) for b in DataLoader(test, batch_size=512)]
        scores = {}
        for seed in self.config.seeds:
            for role in ("distilled", "scratch"):
                model = load_weights(self._student(seed), Path(run) / f"{role}-seed{seed}" / "checkpoints" /
                                     "final.safetensors").to(backend.device)
                acc = classification_evaluator(model, loader, lambda m, b: m(b["input"]))["accuracy"]
                scores[f"{role}/seed{seed}/accuracy"] = acc
        return scores


def build(config: HintonConfig) -> HintonPlan:
    """The plan for a validated ``hinton-kd`` config."""
    return HintonPlan(config)


METHOD = Method(name="hinton-kd", config_model=HintonConfig, build=build, domain="vision",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="Hinton KD: CNN teacher -> small CNN student on real MNIST digits, vs scratch twin")
