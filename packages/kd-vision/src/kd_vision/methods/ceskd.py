"""CES-KD and its teacher-assistant baseline (TAKD) on real handwritten digits.

- CES-KD: Amara, Ziaeefard, Meyer, Gross and Clark, "CES-KD: Curriculum-based Expert Selection for
  Guided Knowledge Distillation", arXiv:2209.07606 (ICPR 2022).
- TAKD: Mirzadeh, Farajtabar, Li, Levine, Matsukawa and Ghasemzadeh, "Improved Knowledge Distillation
  via Teacher Assistant", arXiv:1902.03393 (AAAI 2020).

A pool of experts E_1 < ... < E_K (the last one is the teacher) is trained with cross-entropy, each
cached like any teacher. CES-KD distils the student with
L = (1 − λ)·CE(y, p_S) + λ·τ²·KL(p_{E_k(x)}^τ ‖ p_S^τ), where the expert k(x) of each sample follows
a curriculum (``kd_core.curriculum.CurriculumSelection``): the sample's difficulty quantile u (the
teacher's cross-entropy on it, computed once) and γ moving from ``gamma_start`` to ``gamma_end`` give
k = min(K, 1 + ⌊K·u^γ⌋), so easy samples keep small experts and hard ones reach the teacher as training
advances. The experts' logits on the student's training set are cached once per run (there is no
augmentation), so the ``Ensemble`` reads K cached rows per batch instead of running K models.
TAKD distils along the chain E_K → E_{K−1} → ... → E_1 → student, each step Hinton KD from the previous
model (the assistants are trained once, seed 0, and cached). Each plan compares its student with the
same student trained by plain KD from the teacher and from scratch, mean ± std over seeds; the
``anti-curriculum`` variant (hard samples to small experts) is a sanity ablation (it should do worse).

Besides ``kd_vision.models.build_model`` names, experts and students accept ``digit-cnn-w<N>``: a
``DigitCNN`` of width N without dropout, so a pool of decreasing width needs no registry entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Objective
from kd_core.checkpoint import load_weights
from kd_core.curriculum import CurriculumSelection, cross_entropy_difficulty
from kd_core.data import IndexedDataset, in_order
from kd_core.engine import classification_evaluator
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters, format_mean_std, mean_std
from kd_core.plots import plot_bars, plot_loss_curves
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.schedules import Cosine, Linear, Schedule
from kd_core.signals import CachedTeacher, Ensemble, FrozenTeacher, default_forward
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, default_collate

from kd_vision.data.digits import DigitsDataset
from kd_vision.methods.common import (
    DataConfig,
    Strict,
    TrainConfig,
    cached_model,
    fit,
    model_cost,
    open_run,
    single_phase,
    supervised_objective,
    teacher_pool_splits,
)
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.models import DigitCNN, build_model

Variant = Literal["ces-kd", "anti-curriculum", "takd", "kd", "scratch"]
_WIDTH_NAME = re.compile(r"^digit-cnn-w([1-9][0-9]*)$")


def build_net(name: str, argument: str = "model") -> nn.Module:
    """A model by ``build_model`` name, or ``digit-cnn-w<N>`` (a ``DigitCNN`` of width N, no dropout)."""
    match = _WIDTH_NAME.match(name)
    if match:
        return DigitCNN(width=int(match.group(1)))
    try:
        return build_model(name, num_classes=10)
    except ConfigError as err:
        raise ConfigError(argument, f"{err.expected}, or 'digit-cnn-w<N>'", name) from None


class CurriculumConfig(Strict):
    """The curriculum exponent γ: from ``gamma_start`` (most samples to small experts) to ``gamma_end``."""

    gamma_start: Annotated[float, Field(gt=0)] = 4.0
    gamma_end: Annotated[float, Field(gt=0)] = 1.0
    shape: Literal["linear", "cosine"] = "linear"
    tie_seed: int = 0

    def schedule(self) -> Schedule:
        """γ(progress) as a ``kd_core.schedules`` schedule."""
        kind = Linear if self.shape == "linear" else Cosine
        return kind(self.gamma_start, self.gamma_end)


def _default_experts() -> list[TrainConfig]:
    return [TrainConfig(model="digit-cnn-w4", epochs=15, lr=1e-2),
            TrainConfig(model="digit-cnn-w12", epochs=15, lr=5e-3),
            TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)]


class PoolConfig(RecipeConfig):
    """Fields shared by ``ces-kd`` and ``takd``: data, the expert pool (smallest first), student, KD, seeds."""

    data: DataConfig = DataConfig(teacher_train_size=2500)
    experts: list[TrainConfig] = Field(default_factory=_default_experts)
    student: TrainConfig = TrainConfig(model="digit-cnn-w2", epochs=15, lr=1e-2)
    kd: KDConfig = KDConfig()
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True
    latency_iterations: Annotated[int, Field(gt=0)] = 50


class CESKDConfig(PoolConfig):
    """The ``ces-kd`` recipe: CES-KD, compared with TAKD, KD from the teacher and scratch by default."""

    method: Literal["ces-kd"] = "ces-kd"
    curriculum: CurriculumConfig = CurriculumConfig()
    compare: Annotated[list[Variant], Field(min_length=1)] = Field(
        default_factory=lambda: ["ces-kd", "takd", "kd", "scratch"])


class TAKDConfig(PoolConfig):
    """The ``takd`` recipe: the teacher-assistant chain, compared with KD from the teacher and scratch."""

    method: Literal["takd"] = "takd"
    compare: Annotated[list[Literal["takd", "kd", "scratch"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["takd", "kd", "scratch"])


LABELS = {"ces-kd": "CES-KD", "anti-curriculum": "anti-curriculum", "takd": "TAKD", "kd": "KD (teacher only)",
          "scratch": "scratch"}


class PoolPlan:
    """Experts (and TAKD assistants) once, then every compared student over every seed, then a report."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        experts = config.experts
        if len(experts) < 2:
            raise ConfigError("experts", "at least one assistant below the teacher (2+ experts, smallest first)",
                              [e.model for e in experts])
        sizes = [count_parameters(build_net(e.model, f"experts[{i}].model")) for i, e in enumerate(experts)]
        if sizes != sorted(sizes):
            raise ConfigError("experts", "experts ordered from smallest to largest (parameter counts)",
                              dict(zip([e.model for e in experts], sizes)))
        build_net(config.student.model, "student.model")
        self.compare: list[str] = list(dict.fromkeys(config.compare))

    # -- pieces -----------------------------------------------------------------------------------
    def _splits(self) -> dict[str, DigitsDataset]:
        """``teacher_train`` (the teacher's pool), ``train`` (its first ``train_size``), ``val``, ``test``."""
        c = self.config.data
        return teacher_pool_splits(c.source, train_size=c.train_size, teacher_train_size=c.teacher_train_size,
                                   val_size=c.val_size, test_size=c.test_size)

    def _fit(self, model: nn.Module, train: TrainConfig, objective: Objective, seed: int, splits, out: Path,
             backend: Backend, label: str, progress, teacher: Any = None, resume: bool = False) -> nn.Module:
        return fit(model, single_phase(objective, train), splits, out, backend, label, progress, seed=seed,
                   batch_size=train.batch_size, config={"recipe": self.config.model_dump(), "role": label,
                                                        "seed": seed}, teacher=teacher, resume=resume)

    def _cached(self, spec: TrainConfig, train: Callable[[nn.Module], nn.Module],
                **determinants: Any) -> tuple[nn.Module, str]:
        """``cached_model`` keyed by the data, ``spec`` and ``determinants`` (seed 0 initialisation)."""
        def build() -> nn.Module:
            torch.manual_seed(0)
            return build_net(spec.model)

        return cached_model(build, train, "digits", self.config.reuse_teacher,
                              data=self.config.data.teacher_key(), teacher=spec.model_dump(), **determinants)

    def _experts(self, splits, out: Path, backend: Backend, progress, resume: bool) -> list[tuple[nn.Module, str]]:
        """E_1..E_K trained with cross-entropy on the teacher's pool (each cached by its settings)."""
        pool = {**splits, "train": splits["teacher_train"]}
        experts = []
        for i, spec in enumerate(self.config.experts):
            last = i == len(self.config.experts) - 1
            folder = "teacher" if last else f"expert{i + 1}"

            def train(model: nn.Module, spec: TrainConfig = spec, folder: str = folder) -> nn.Module:
                return self._fit(model, spec, supervised_objective(), 0, pool, out / folder, backend, folder,
                                 progress, resume=resume)

            # keyed like hinton-kd's teacher: with the same settings the two share one cache entry
            model, note = self._cached(spec, train)
            experts.append((model.to(backend.device), note))
        return experts

    def _assistants(self, experts: list[nn.Module], splits, out: Path, backend: Backend, progress,
                    resume: bool) -> list[tuple[nn.Module, str]]:
        """TAKD's chain below the teacher, largest first: each assistant is Hinton KD from the one above."""
        pool = {**splits, "train": splits["teacher_train"]}
        chain: list[tuple[nn.Module, str]] = []
        above = experts[-1]
        upstream = [self.config.experts[-1].model_dump()]  # the chain above: it determines this assistant
        for i in range(len(self.config.experts) - 2, -1, -1):
            spec = self.config.experts[i]
            folder = f"assistant{i + 1}"

            def train(model: nn.Module, spec: TrainConfig = spec, folder: str = folder,
                      teacher: nn.Module = above) -> nn.Module:
                return self._fit(model, spec, distill_objective(self.config.kd), 0, pool, out / folder, backend,
                                 folder, progress, teacher=teacher, resume=resume)

            model, note = self._cached(spec, train, role="takd-assistant", kd=self.config.kd.model_dump(),
                                       upstream=list(upstream))
            model = model.to(backend.device)
            chain.append((model, note))
            upstream.append(spec.model_dump())
            above = model
        return chain

    def _difficulty(self, teacher: nn.Module, train: DigitsDataset, backend: Backend) -> dict[int, float]:
        """The teacher's cross-entropy on each of the student's training samples (ids = positions)."""
        indexed = IndexedDataset(train)
        batches = (backend.to_device(default_collate([indexed[i] for i in chunk]))
                   for chunk in in_order(len(indexed), 256))
        return cross_entropy_difficulty(teacher, batches)

    def _expert_caches(self, experts: list[nn.Module], train: DigitsDataset, out: Path,
                       backend: Backend) -> list[CachedTeacher]:
        """Each expert's logits on the student's training set, written once under ``out/expert-logits``."""
        indexed = IndexedDataset(train)
        caches = []
        for i, expert in enumerate(experts):
            cache = CachedTeacher(FrozenTeacher(expert), out / "expert-logits" / f"expert{i + 1}")
            cache.bind(["logits"], default_forward)
            if not cache.exists():
                cache.build(backend.to_device(default_collate([indexed[j] for j in chunk]))
                            for chunk in in_order(len(indexed), 256))
            caches.append(cache)
        return caches

    def _student(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_net(self.config.student.model)

    def _selection(self, difficulty: dict[int, float], reverse: bool) -> CurriculumSelection:
        curriculum = getattr(self.config, "curriculum", CurriculumConfig())
        return CurriculumSelection(difficulty, len(self.config.experts), curriculum.schedule(), reverse=reverse,
                                   seed=curriculum.tie_seed)

    # -- the whole plan -----------------------------------------------------------------------------
    def run(self, context: RunContext) -> Path:
        """Train the pool, distil every compared student, evaluate and report under ``context.out``."""
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, self.config.model_dump(), self.config.seeds[0], backend)
        splits = self._splits()
        routing: dict[str, Any] = {}
        with progress_bar() as progress:
            trained = self._experts(splits, top.path, backend, progress, context.resume)
            experts = [m for m, _ in trained]
            teacher = experts[-1]
            chain = (self._assistants(experts, splits, top.path, backend, progress, context.resume)
                     if "takd" in self.compare else [])
            signals: dict[str, Any] = {"scratch": None, "kd": teacher}
            if chain:
                signals["takd"] = chain[-1][0]
            curricula = [v for v in ("ces-kd", "anti-curriculum") if v in self.compare]
            if curricula:
                difficulty = self._difficulty(teacher, splits["train"], backend)
                caches = self._expert_caches(experts, splits["train"], top.path, backend)
                for variant in curricula:
                    selection = self._selection(difficulty, reverse=variant == "anti-curriculum")
                    routing[variant] = routing_summary(selection, difficulty)
                    signals[variant] = (caches, selection)
            students: dict[str, dict[int, nn.Module]] = {v: {} for v in self.compare}
            for seed in self.config.seeds:
                for variant in self.compare:
                    students[variant][seed] = self._train_student(variant, signals[variant], seed, splits,
                                                                  top.path, backend, progress, context.resume)
        console.print("evaluating on the test split")
        results = self._evaluate(trained, chain, students, splits["test"], backend)
        results["routing"] = routing
        top.write_json("results.json", results)
        self._report(top, results, context)
        return top.path

    def _train_student(self, variant: str, signal: Any, seed: int, splits, out: Path, backend: Backend,
                       progress, resume: bool) -> nn.Module:
        if variant == "scratch":
            objective, teacher = supervised_objective(), None
        elif variant in ("ces-kd", "anti-curriculum"):
            caches, selection = signal
            objective, teacher = distill_objective(self.config.kd), Ensemble(caches, selection)
        else:
            objective, teacher = distill_objective(self.config.kd), signal
        return self._fit(self._student(seed), self.config.student, objective, seed, splits,
                         out / f"{variant}-seed{seed}", backend, f"{variant} s{seed}", progress,
                         teacher=teacher, resume=resume)

    def _evaluate(self, experts, chain, students, test, backend: Backend) -> dict:
        loader = [backend.to_device(b) for b in DataLoader(test, batch_size=512)]
        example = loader[0]["input"][:1]

        def score(model: nn.Module) -> dict[str, float]:
            return classification_evaluator(model, loader, lambda m, b: m(b["input"]))

        def describe(model: nn.Module, spec: TrainConfig, note: str) -> dict[str, Any]:
            return {"model": spec.model, "params": count_parameters(model), "note": note, **score(model)}

        results: dict[str, Any] = {
            "experts": [describe(m, s, n) for (m, n), s in zip(experts, self.config.experts)],
            "assistants": [describe(m, self.config.experts[len(self.config.experts) - 2 - i], n)
                           for i, (m, n) in enumerate(chain)],
            "seeds": {}, "summary": {}}
        for variant, by_seed in students.items():
            results["seeds"][variant] = {str(s): score(m) for s, m in by_seed.items()}
            accs = [100 * r["accuracy"] for r in results["seeds"][variant].values()]
            mean, std = mean_std(accs)
            results["summary"][variant] = {"accuracy_mean": mean, "accuracy_std": std}
        results["student"] = model_cost(self._student(self.config.seeds[0]).to(backend.device), example,
                                        self.config.latency_iterations)
        results["direction"] = direction(results["summary"])
        return results

    def _report(self, top: RunDir, results: dict, context: RunContext) -> Path:
        c = self.config
        rows = [{"model": f"expert E{i + 1}" + (" (teacher)" if i == len(c.experts) - 1 else ""),
                 "architecture": e["model"], "params": e["params"], "accuracy %": f"{100 * e['accuracy']:.2f}",
                 "origin": e["note"]} for i, e in enumerate(results["experts"])]
        rows += [{"model": f"TAKD assistant {i + 1}", "architecture": a["model"], "params": a["params"],
                  "accuracy %": f"{100 * a['accuracy']:.2f}", "origin": a["note"]}
                 for i, a in enumerate(results["assistants"])]
        student_rows = [{"student": LABELS[v], "accuracy % (mean ± std)": format_mean_std(
            [100 * r["accuracy"] for r in results["seeds"][v].values()]),
            "ECE %": format_mean_std([100 * r["ece"] for r in results["seeds"][v].values()]),
            "NLL": format_mean_std([r["nll"] for r in results["seeds"][v].values()], digits=3)}
            for v in self.compare]
        per_seed = [{"seed": str(s), **{LABELS[v]: 100 * results["seeds"][v][str(s)]["accuracy"]
                                        for v in self.compare}} for s in c.seeds]
        routing_rows = [{"variant": LABELS[v], "progress": p,
                         **{f"E{k + 1}": f"{100 * share:.0f}%" for k, share in enumerate(r["shares"])},
                         "easiest 25 %: mean expert": f"{r['easiest_quarter_mean_expert']:.2f}",
                         "hardest 25 %: mean expert": f"{r['hardest_quarter_mean_expert']:.2f}"}
                        for v, by_p in results["routing"].items() for p, r in by_p.items()]
        curriculum = getattr(c, "curriculum", None)
        gamma = (f"γ {curriculum.shape} from {curriculum.gamma_start} to {curriculum.gamma_end}; "
                 if curriculum is not None else "")
        summary = (f"Student {c.student.model} ({results['student']['params']} parameters), "
                   f"{c.student.epochs} epochs, AdamW lr {c.student.lr}. KD: τ = {c.kd.temperature}, "
                   f"λ = {c.kd.alpha}; {gamma}difficulty = the teacher's cross-entropy on each training sample. "
                   f"Data: {c.data.source}, {c.data.train_size} train (the experts learned from "
                   f"{c.data.teacher_train_size or c.data.train_size}) / {c.data.val_size} val / "
                   f"{c.data.test_size} test. Each student is its last epoch; metrics on the test split.\n\n"
                   + direction_text(results["direction"]))
        plots_dir = top.plots
        seed0 = str(c.seeds[0])
        curves = []
        for variant in self.compare:
            curves += [{**r, "run": LABELS[variant]} for r in RunDir(top.path / f"{variant}-seed{seed0}").metrics()
                       if "loss/total" in r]
        loss_png = plot_loss_curves(curves, plots_dir / "loss_curves.png", keys=["loss/total"])
        acc_png = plot_bars({LABELS[v]: results["summary"][v]["accuracy_mean"] for v in self.compare},
                            plots_dir / "accuracy.png", title="Student test accuracy (mean over seeds)",
                            ylabel="accuracy (%)")
        sections = [("Summary", summary), ("Students (test split)", markdown_table(student_rows)),
                    ("Per seed (accuracy %)", markdown_table(per_seed, digits=2)),
                    ("Experts and assistants", markdown_table(rows))]
        if routing_rows:
            sections.append(("Curriculum routing (share of training samples per expert)",
                             markdown_table(routing_rows)))
        sections.append(("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: "
                                      f"{context.precision}. Resolved recipe in `config.yaml`.\n"))
        title = "CES-KD" if c.method == "ces-kd" else "TAKD"
        return write_report(top, f"{title} on real digits", sections,
                            plots=[(f"Training loss (seed {seed0})", loss_png), ("Student accuracy", acc_png)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test accuracy of every final student of a finished run."""
        backend = Backend(device=device)
        loader = [backend.to_device(b) for b in DataLoader(self._splits()["test"], batch_size=512)]
        scores = {}
        for seed in self.config.seeds:
            for variant in self.compare:
                model = load_weights(self._student(seed), Path(run) / f"{variant}-seed{seed}" / "checkpoints" /
                                     "final.safetensors").to(backend.device)
                scores[f"{variant}/seed{seed}/accuracy"] = classification_evaluator(
                    model, loader, lambda m, b: m(b["input"]))["accuracy"]
        return scores


def routing_summary(selection: CurriculumSelection, difficulty: dict[int, float]) -> dict[str, dict[str, Any]]:
    """Per progress (0, 0.25, ..., 1): expert shares, and the mean expert (1 = smallest) of the easiest and
    hardest quarters of the training samples by difficulty."""
    ranked = sorted(difficulty, key=lambda i: difficulty[i])
    quarter = max(1, len(ranked) // 4)
    easiest, hardest = ranked[:quarter], ranked[-quarter:]
    return {f"{p:.2f}": {"shares": selection.shares(p),
                         "easiest_quarter_mean_expert": 1 + float(selection.select(easiest, p).double().mean()),
                         "hardest_quarter_mean_expert": 1 + float(selection.select(hardest, p).double().mean())}
            for p in (0.0, 0.25, 0.5, 0.75, 1.0)}


def direction(summary: dict[str, dict[str, float]]) -> dict[str, bool | None]:
    """The expected ordering on mean accuracy: D ≥ C, C > B, E < D (None where a variant is missing)."""
    acc = {v: s["accuracy_mean"] for v, s in summary.items()}

    def check(a: str, b: str, strict: bool) -> bool | None:
        if a not in acc or b not in acc:
            return None
        return acc[a] > acc[b] if strict else acc[a] >= acc[b]

    return {"ces-kd >= takd": check("ces-kd", "takd", False), "takd > kd": check("takd", "kd", True),
            "anti-curriculum < ces-kd": check("ces-kd", "anti-curriculum", True),
            "ces-kd > scratch": check("ces-kd", "scratch", True), "kd > scratch": check("kd", "scratch", True)}


def direction_text(checks: dict[str, bool | None]) -> str:
    """One line per checked ordering, for reports."""
    lines = [f"- {name}: **{'held' if ok else 'did not hold'}**" for name, ok in checks.items() if ok is not None]
    return ("Expected direction (on mean accuracy):\n\n" + "\n".join(lines) + "\n") if lines else ""


def build(config: PoolConfig) -> PoolPlan:
    """The plan for a validated ``ces-kd`` or ``takd`` config."""
    return PoolPlan(config)


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
METHOD = Method(name="ces-kd", config_model=CESKDConfig, build=build, domain="vision", recipes=_RECIPES,
                summary="CES-KD: per-sample curriculum over a pool of CNN experts vs TAKD, KD and scratch")
TAKD_METHOD = Method(name="takd", config_model=TAKDConfig, build=build, domain="vision", recipes=_RECIPES,
                     summary="TAKD: teacher -> assistants -> student chain of Hinton KD, vs KD and scratch")
