"""Annealing-KD on real digits, with the "MSE without annealing" control, vanilla KD and a scratch twin.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163).
The losses, the per-epoch Φ(T) schedule and the two phases live in
``kd_core.annealing``; this module wires them to the digits, a CNN teacher and a small CNN student.

Arms, each from the same student initialisation per seed and with the same epoch budget E₁ + E₂:

- ``annealing-kd``: phase I ``MSE(z_s, Φ(T)·z_t)``, T = τ_max..1, for E₁ epochs; the best phase-I student
  (validation accuracy) is restored; phase II cross-entropy on labels for E₂ epochs with a fresh optimizer;
- ``mse-kd``: the same with Φ ≡ 1 (a third-party replication found plain logit MSE as good as annealing);
- ``hinton-kd``: α·T²·KL + (1 − α)·CE for E₁ + E₂ epochs; ``scratch``: CE alone for E₁ + E₂ epochs.

Deviations from the paper, on purpose: AdamW with cosine decay restarted in each phase (the paper's CIFAR
code uses SGD 0.1 with ×0.1 steps at ½ and ¾ of each phase); the reported student of every arm is its last
epoch (the reference code reports the best test accuracy); best phase-I checkpoints are chosen on a
real validation split, not the test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
from kd_core import Backend
from kd_core.annealing import AnnealedScale, annealing_phases
from kd_core.checkpoint import load_weights
from kd_core.engine import Phase, adamw, classification_evaluator, cosine_lr
from kd_core.metrics import CalibrationResult, format_mean_std, mean_std
from kd_core.plots import plot_bars, plot_loss_curves, plot_reliability_diagram
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.signals import CachedTeacher, FrozenTeacher, Signal
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader

from kd_vision.data.digits import DigitsDataset
from kd_vision.methods.common import (
    DataConfig,
    Strict,
    TrainConfig,
    cached_model,
    calibration,
    fit,
    model_cost,
    open_run,
    single_phase,
    supervised_objective,
    teacher_pool_splits,
)
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.models import build_model

Arm = Literal["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
ARM_LABELS: dict[str, str] = {"annealing-kd": "annealing-KD", "mse-kd": "MSE-KD (no annealing)",
                              "hinton-kd": "vanilla KD (Hinton)", "scratch": "scratch"}


class StudentConfig(Strict):
    """The student: any ``build_model`` name, AdamW settings, and phase II's own learning rate (default: ``lr``)."""

    model: str = "student-cnn"
    lr: Annotated[float, Field(gt=0)] = 1e-2
    phase2_lr: Annotated[float, Field(gt=0)] | None = None
    batch_size: Annotated[int, Field(gt=0)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class AnnealingSection(Strict):
    """τ_max and the two phases' lengths; the KD and scratch arms train for ``phase1_epochs + phase2_epochs``."""

    tau_max: Annotated[int, Field(ge=1)] = 10
    phase1_epochs: Annotated[int, Field(gt=0)] = 20
    phase2_epochs: Annotated[int, Field(gt=0)] = 10

    @property
    def budget(self) -> int:
        """Epochs of every arm: E₁ + E₂."""
        return self.phase1_epochs + self.phase2_epochs


class AnnealingConfig(RecipeConfig):
    """The ``annealing-kd`` and ``mse-kd`` recipes (the method names which arm the report leads with).

    ``cache_teacher_outputs`` runs the frozen teacher once over the students' train split and serves its
    logits from disk to every arm and seed (exact: the inputs are not augmented); the teacher is ~30× the
    student's MACs, so this is most of the run's compute.
    """

    method: Literal["annealing-kd", "mse-kd"] = "annealing-kd"
    data: DataConfig = DataConfig()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: StudentConfig = StudentConfig()
    annealing: AnnealingSection = AnnealingSection()
    kd: KDConfig = KDConfig()
    arms: Annotated[list[Arm], Field(min_length=1)] = Field(
        default_factory=lambda: ["annealing-kd", "mse-kd", "hinton-kd", "scratch"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = None
    reuse_teacher: bool = True
    cache_teacher_outputs: bool = True
    latency_iterations: Annotated[int, Field(gt=0)] = 50

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> AnnealingConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat, received {self.seeds}")
        a = self.annealing
        if "annealing-kd" in self.arms and a.phase1_epochs < a.tau_max:
            raise ValueError(f"annealing.phase1_epochs must be at least annealing.tau_max ({a.tau_max}): one epoch "
                             f"per temperature, received {a.phase1_epochs}")
        return self


def student_phases(config: AnnealingConfig, arm: str) -> list[Phase]:
    """The phases one arm trains through (checked now, before any training)."""
    s, a = config.student, config.annealing
    if arm in ("annealing-kd", "mse-kd"):
        return annealing_phases(a.tau_max, a.phase1_epochs, a.phase2_epochs, anneal=arm == "annealing-kd",
                                phase1_optimizer=adamw(s.lr, s.weight_decay),
                                phase2_optimizer=adamw(s.phase2_lr or s.lr, s.weight_decay), scheduler=cosine_lr)
    train = TrainConfig(model=s.model, epochs=a.budget, lr=s.lr, batch_size=s.batch_size, weight_decay=s.weight_decay)
    objective = distill_objective(config.kd) if arm == "hinton-kd" else supervised_objective()
    return single_phase(objective, train)


class AnnealingPlan:
    """Teacher once, then every arm for every seed, then a report comparing them."""

    def __init__(self, config: AnnealingConfig) -> None:
        self.config = config
        for arm in config.arms:  # bad phase settings fail here, before anything is trained
            student_phases(config, arm)

    # -- pieces -----------------------------------------------------------------------------------
    def _splits(self) -> dict[str, DigitsDataset]:
        """``teacher_train`` (the teacher's pool), ``train`` (its first ``train_size``), ``val``, ``test``."""
        c = self.config.data
        return teacher_pool_splits(c.source, train_size=c.train_size, teacher_train_size=c.teacher_train_size,
                                   val_size=c.val_size, test_size=c.test_size)

    def _fit(self, model: nn.Module, phases: list[Phase], batch_size: int, seed: int, splits, out: Path,
             backend: Backend, label: str, progress, teacher: Signal | nn.Module | None = None,
             resume: bool = False) -> nn.Module:
        return fit(model, phases, splits, out, backend, label, progress, seed=seed, batch_size=batch_size,
                   config={"recipe": self.config.model_dump(), "role": label, "seed": seed}, teacher=teacher,
                   resume=resume, clip_grad_norm=self.config.clip_grad_norm)

    def _teacher(self, splits, out: Path, backend: Backend, progress, resume: bool) -> tuple[nn.Module, str]:
        c = self.config

        def build() -> nn.Module:
            torch.manual_seed(0)
            return build_model(c.teacher.model)

        def train(model: nn.Module) -> nn.Module:
            return self._fit(model, single_phase(supervised_objective(), c.teacher), c.teacher.batch_size, 0,
                             {**splits, "train": splits["teacher_train"]}, out / "teacher", backend, "teacher",
                             progress, resume=resume)

        # the same key as hinton-kd's for the same data and teacher settings: the two share a cached teacher
        teacher, note = cached_model(build, train, "digits", c.reuse_teacher, data=c.data.teacher_key(),
                                       teacher=c.teacher.model_dump())
        return teacher.to(backend.device).eval(), note

    def _signal(self, teacher: nn.Module, top: Path) -> Signal | nn.Module:
        """The teacher as the students see it: its logits cached on disk (built by the first fit), or live."""
        if not self.config.cache_teacher_outputs:
            return teacher
        return CachedTeacher(FrozenTeacher(teacher), top / "teacher-outputs")

    def _student(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(self.config.student.model)

    # -- the whole plan -----------------------------------------------------------------------------
    def run(self, context: RunContext) -> Path:
        """Train the teacher (or reuse it), every arm for every seed, evaluate and report under ``context.out``."""
        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seeds[0], backend)
        splits = self._splits()
        students: dict[str, dict[int, nn.Module]] = {arm: {} for arm in c.arms}
        with progress_bar() as progress:
            teacher, teacher_note = self._teacher(splits, top.path, backend, progress, context.resume)
            for seed in c.seeds:
                for arm in c.arms:
                    signal = self._signal(teacher, top.path) if arm != "scratch" else None
                    students[arm][seed] = self._fit(
                        self._student(seed), student_phases(c, arm), c.student.batch_size, seed, splits,
                        top.path / f"{arm}-seed{seed}", backend, f"{arm} s{seed}", progress,
                        teacher=signal, resume=context.resume)
        console.print("evaluating on the test split")
        results = self._evaluate(teacher, students, splits["test"], backend, top)
        results["teacher_note"] = teacher_note
        top.write_json("results.json", results)
        self._report(top, results, teacher_note, context)
        return top.path

    def _evaluate(self, teacher: nn.Module, students: dict[str, dict[int, nn.Module]], test, backend: Backend,
                  top: RunDir) -> dict:
        c = self.config
        loader = [backend.to_device(b) for b in DataLoader(test, batch_size=512)]
        example = loader[0]["input"][:1]

        def score(model: nn.Module) -> dict[str, float]:
            return classification_evaluator(model, loader, lambda m, b: m(b["input"]))

        results: dict = {
            "arms": list(c.arms),
            "teacher": {**score(teacher), **model_cost(teacher, example, c.latency_iterations)},
            "student": model_cost(next(iter(students[c.arms[0]].values())), example, c.latency_iterations),
            "seeds": {arm: {str(s): score(m) for s, m in by_seed.items()} for arm, by_seed in students.items()},
        }
        results["summary"] = {}
        for arm in c.arms:
            per_seed = list(results["seeds"][arm].values())
            results["summary"][arm] = {}
            for key in ("accuracy", "ece", "nll"):
                mean, std = mean_std([r[key] for r in per_seed])
                results["summary"][arm][f"{key}_mean"], results["summary"][arm][f"{key}_std"] = mean, std
        a = c.annealing
        if "annealing-kd" in c.arms:
            scale = AnnealedScale(a.tau_max, a.phase1_epochs)
            results["phase1_schedule"] = {"tau_max": a.tau_max, "temperature": scale.temperatures(),
                                          "phi": scale.values()}
        results["best_phase1_epoch"] = {
            arm: {str(s): _best_epoch(RunDir(top.path / f"{arm}-seed{s}"), "phase1") for s in c.seeds}
            for arm in c.arms if arm in ("annealing-kd", "mse-kd")}
        seed0 = c.seeds[0]
        results["calibration"] = {"teacher": calibration(teacher, loader).__dict__,
                                  **{ARM_LABELS[arm]: calibration(students[arm][seed0], loader).__dict__
                                     for arm in c.arms}}
        results["verdict"] = verdict(results["summary"])
        return results

    def _report(self, top: RunDir, results: dict, teacher_note: str, context: RunContext) -> Path:
        c = self.config
        rows, per_seed_rows = summary_rows(results), per_seed_table(results)
        a = c.annealing
        schedule = results.get("phase1_schedule")
        schedule_text = (f"T per phase-I epoch: {schedule['temperature']}; Φ(T) = 1 − (T−1)/τ_max: "
                         f"{[round(v, 3) for v in schedule['phi']]}.\n" if schedule else "")
        best_text = "".join(f"Best phase-I epoch (restored before phase II), {ARM_LABELS[arm]}: "
                            f"{results['best_phase1_epoch'][arm]}.\n" for arm in results["best_phase1_epoch"])
        summary = (f"{results['verdict']['sentence']}\n\n"
                   f"Data: {c.data.source}, {c.data.train_size} train / {c.data.val_size} val / {c.data.test_size} "
                   f"test; the teacher learned from {c.data.teacher_train_size or c.data.train_size} train samples "
                   f"(a superset of the students'). Teacher {c.teacher.model} ({teacher_note}); student "
                   f"{c.student.model}. Annealing: τ_max = {a.tau_max}, phase I {a.phase1_epochs} epochs (logit "
                   f"MSE), phase II {a.phase2_epochs} epochs (CE, fresh AdamW, from the best phase-I student). "
                   f"Vanilla KD: T = {c.kd.temperature}, α = {c.kd.alpha}; vanilla KD and scratch train "
                   f"{a.budget} epochs. AdamW lr {c.student.lr} (phase II {c.student.phase2_lr or c.student.lr}), "
                   f"cosine decay in each phase, batch {c.student.batch_size}. Every student is its last epoch; "
                   f"mean ± std (sample std) over seeds {c.seeds}; ECE with 15 bins on the test split.\n\n"
                   f"{schedule_text}{best_text}")
        seed0 = str(c.seeds[0])
        curves = []
        for arm in c.arms:
            curves += [{**r, "run": ARM_LABELS[arm]} for r in RunDir(top.path / f"{arm}-seed{seed0}").metrics()
                       if "loss/total" in r]
        loss_png = plot_loss_curves(curves, top.plots / "loss_curves.png", keys=["loss/total"])
        calib = {name: CalibrationResult(**value) for name, value in results["calibration"].items()}
        rel_png = plot_reliability_diagram(calib, top.plots / "reliability.png")
        acc_png = plot_bars({r["model"]: float(str(r["accuracy %"]).split(" ")[0]) for r in rows},
                            top.plots / "accuracy.png", title="Test accuracy", ylabel="accuracy (%)")
        return write_report(top, "Annealing-KD vs MSE-KD vs vanilla KD vs scratch on real MNIST digits", [
            ("Summary", summary),
            ("Results (test split, mean ± std over seeds)", markdown_table(rows)),
            ("Per seed", markdown_table(per_seed_rows, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: "
                          f"{context.precision}. Environment in `env.json`, resolved recipe in `config.yaml`.\n"),
        ], plots=[(f"Training loss (seed {seed0})", loss_png), (f"Reliability diagrams (seed {seed0})", rel_png),
                  ("Test accuracy (mean over seeds)", acc_png)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test accuracy of every arm's final student in a finished run."""
        backend = Backend(device=device)
        loader = [backend.to_device(b) for b in DataLoader(self._splits()["test"], batch_size=512)]
        scores = {}
        for seed in self.config.seeds:
            for arm in self.config.arms:
                model = load_weights(self._student(seed), Path(run) / f"{arm}-seed{seed}" / "checkpoints" /
                                     "final.safetensors").to(backend.device)
                scores[f"{arm}/seed{seed}/accuracy"] = classification_evaluator(
                    model, loader, lambda m, b: m(b["input"]))["accuracy"]
        return scores


def summary_rows(results: dict) -> list[dict]:
    """Table rows: the teacher, then each arm's accuracy, ECE and NLL as mean ± std over seeds."""
    t = results["teacher"]
    rows = [{"model": "teacher", "accuracy %": f"{100 * t['accuracy']:.2f}", "ECE %": f"{100 * t['ece']:.2f}",
             "NLL": f"{t['nll']:.3f}", "params": t["params"]}]
    for arm in results["arms"]:
        per_seed = list(results["seeds"][arm].values())
        rows.append({"model": ARM_LABELS[arm],
                     "accuracy %": format_mean_std([100 * r["accuracy"] for r in per_seed]),
                     "ECE %": format_mean_std([100 * r["ece"] for r in per_seed]),
                     "NLL": format_mean_std([r["nll"] for r in per_seed], digits=3),
                     "params": results["student"]["params"]})
    return rows


def per_seed_table(results: dict) -> list[dict]:
    """One row per seed: each arm's test accuracy (%)."""
    seeds = list(results["seeds"][results["arms"][0]])
    return [{"seed": s, **{f"{ARM_LABELS[arm]} acc %": 100 * results["seeds"][arm][s]["accuracy"]
                           for arm in results["arms"]}} for s in seeds]


def _best_epoch(run: RunDir, phase: str) -> int | None:
    """The 1-based epoch of ``phase`` with the highest validation accuracy (the first one on ties)."""
    rows = [r for r in run.metrics() if r.get("phase_name") == phase and "val/accuracy" in r]
    if not rows:
        return None
    return int(max(rows, key=lambda r: (r["val/accuracy"], -r["epoch"]))["epoch"])


def verdict(summary: dict[str, dict[str, float]]) -> dict:
    """Whether the paper's direction held: annealing-KD ≥ vanilla KD and > scratch (means over seeds).

    Also whether annealing beat plain logit MSE (the control). Arms missing from ``summary`` are skipped.
    """
    acc = {arm: 100 * s["accuracy_mean"] for arm, s in summary.items()}
    out: dict = {}
    if "annealing-kd" not in acc:
        lead = next(iter(acc))
        others = ", ".join(f"{ARM_LABELS[a]} {v:.2f}%" for a, v in acc.items() if a != lead)
        out["sentence"] = (f"{ARM_LABELS[lead]} reached {acc[lead]:.2f}% test accuracy (mean over seeds); "
                           f"{others or 'no other arm ran'}.")
        return out
    akd = acc["annealing-kd"]
    parts = []
    if "hinton-kd" in acc:
        out["akd_ge_kd"] = akd >= acc["hinton-kd"]
    if "scratch" in acc:
        out["akd_gt_scratch"] = akd > acc["scratch"]
    if "mse-kd" in acc:
        out["akd_gt_mse"] = akd > acc["mse-kd"]
    for arm in ("hinton-kd", "scratch", "mse-kd"):
        if arm in acc:
            parts.append(f"{ARM_LABELS[arm]} {acc[arm]:.2f}% ({akd - acc[arm]:+.2f} pts)")
    checks = {k: out[k] for k in ("akd_ge_kd", "akd_gt_scratch") if k in out}
    out["paper_direction_held"] = bool(checks) and all(checks.values())
    direction = ("**held**" if out["paper_direction_held"] else "**did not hold**")
    names = {"akd_ge_kd": "≥ vanilla KD", "akd_gt_scratch": "> scratch"}
    detail = ", ".join(f"{names[k]}: {'yes' if v else 'no'}" for k, v in checks.items())
    sentence = (f"Annealing-KD reached {akd:.2f}% test accuracy (mean over seeds) vs {'; '.join(parts)}. "
                f"The paper's direction (annealing-KD ≥ vanilla KD and > scratch) {direction} here ({detail})")
    if "akd_gt_mse" in out:
        sentence += (f"; annealing {'beat' if out['akd_gt_mse'] else 'did not beat'} plain logit MSE without "
                     f"annealing (the control)")
    out["sentence"] = sentence + "."
    return out


def build(config: AnnealingConfig) -> AnnealingPlan:
    """The plan for a validated ``annealing-kd`` or ``mse-kd`` config."""
    return AnnealingPlan(config)


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"

METHOD = Method(name="annealing-kd", config_model=AnnealingConfig, build=build, domain="vision", recipes=_RECIPES,
                summary="Annealing-KD (Jafari et al. 2021): Φ(T)-annealed logit MSE, then CE; vs MSE-KD, KD, scratch")
MSE_METHOD = Method(name="mse-kd", config_model=AnnealingConfig, build=build, domain="vision", recipes=_RECIPES,
                    summary="Annealing-KD's control: logit MSE without annealing (Φ ≡ 1), then CE; vs KD, scratch")
