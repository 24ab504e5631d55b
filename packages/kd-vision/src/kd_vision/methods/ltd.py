"""LTD, PGD-AT and defensive distillation on real digits, with gradient-masking checks.

Chen and Lee, "LTD: Low Temperature Distillation for Robust Adversarial Training" (later "…for Gradient
Masking-free Adversarial Training"), arXiv:2111.02331. LTD is PGD adversarial training whose one-hot
labels are replaced by soft labels ``q(x) = softmax(f_T(x)/τ_T)`` of a clean-trained teacher at a low,
fixed τ_T; the student's logits are divided by a fixed τ_S that is kept at test time (the deployed model
is ``LogitScale(student, 1/τ_S)``). Per batch: ``x_adv = PGD_{ε,α,K}`` maximising ``CE(q(x), p(x+δ))``,
then ``min_θ CE(q(x), p(x_adv))`` with ``p = softmax(f_S/τ_S)``; the teacher always sees the clean x.

Baselines: ``pgd-at`` (Madry et al., arXiv:1706.06083), the same training
with one-hot labels; ``defensive-distillation`` (Papernot et al., arXiv:1511.04508), a teacher and a
student both trained at T = 100 without adversarial examples and deployed at T = 1, the gradient-masking
foil. Every plan trains through ``Distiller``; adversarial inputs come from its ``forward`` hook
(``kd_core.adversarial.AdversarialForward``). Reports give clean accuracy, PGD-20 and CW-margin robust
accuracy, a transfer attack from an independently (clean) trained model, attacks at another logit
scale, and an ε sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from kd_core import Backend, Objective, Term
from kd_core.adversarial import AdversarialForward
from kd_core.checkpoint import load_weights
from kd_core.losses import check_same_shape, check_temperature, cross_entropy
from kd_core.metrics import format_mean_std, mean_std
from kd_core.plots import plot_bars
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.signals import FrozenTeacher, default_forward
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from kd_vision.attacks import PGD, LogitScale, robust_accuracy
from kd_vision.data.digits import MEAN, STD, DigitsDataset, make_splits
from kd_vision.methods.common import Strict, TrainConfig, cached_model, fit, open_run, single_phase
from kd_vision.models import build_model

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


# -- the LTD loss ------------------------------------------------------------------------------------
def soft_labels(teacher_logits: torch.Tensor, teacher_temperature: float) -> torch.Tensor:
    """LTD's soft labels ``q = softmax(z_T / τ_T)`` (τ_T < 1 sharpens, τ_T > 1 softens)."""
    t = check_temperature(teacher_temperature, "teacher_temperature")
    return F.softmax(teacher_logits.float() / t, dim=-1)


def ltd_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, teacher_temperature: float = 1.0
                      ) -> torch.Tensor:
    """``mean_i −Σ_c q_ic log softmax(s_i)_c`` with ``q = softmax(teacher/τ_T)``; no T² factor.

    ``student`` are the deployed student's logits, i.e. already divided by τ_S (``LogitScale``).
    """
    check_same_shape(student, teacher)
    q = soft_labels(teacher, teacher_temperature)
    return -(q * F.log_softmax(student.float(), dim=-1)).sum(-1).mean()


# -- configs -----------------------------------------------------------------------------------------
class DataConfig(Strict):
    """Which digits and how many per split (the 8×8 scikit-learn digits run in minutes on a CPU)."""

    source: Literal["mnist5k", "sklearn8x8"] = "sklearn8x8"
    train_size: Annotated[int, Field(gt=0)] = 1000
    val_size: Annotated[int, Field(gt=0)] = 200
    test_size: Annotated[int, Field(gt=0)] = 400


class AttackConfig(Strict):
    """An L∞ PGD attack in pixel units: ε, step α, K steps."""

    epsilon: Annotated[float, Field(ge=0)] = 0.1
    step_size: Annotated[float, Field(gt=0)] = 0.025
    steps: Annotated[int, Field(ge=1)] = 10

    def build(self, loss: str = "ce") -> PGD:
        """The ``PGD`` on digits normalised with the MNIST mean and std."""
        return PGD(self.epsilon, self.step_size, self.steps, loss=loss, mean=MEAN, std=STD)


class EvalConfig(Strict):
    """Test-time attacks: PGD-``steps`` (CE and CW margin), two logit-scaled attacks and an ε sweep.

    ``logit_scale`` is the factor masking check (i) multiplies the deployed logits by before attacking
    (1/100 undoes defensive distillation's T); ``rescale`` is a second, moderate one for check (ii).
    The sweep uses α = ``step_size``·ε/``epsilon``. ``split`` is where attacks run (``val`` for tuning).
    """

    attack: AttackConfig = AttackConfig(epsilon=0.1, step_size=0.0125, steps=20)
    logit_scale: Annotated[float, Field(gt=0)] = 0.01
    rescale: Annotated[float, Field(gt=0)] = 2.0
    split: Literal["test", "val"] = "test"
    sweep: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.15])
    batch_size: Annotated[int, Field(gt=0)] = 400


class AdversarialConfig(RecipeConfig):
    """Fields every plan here shares. ``teacher`` is the clean-trained reference model: LTD's teacher
    and, for every method, the source of the transfer attack (trained once and cached)."""

    data: DataConfig = DataConfig()
    teacher: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    eval: EvalConfig = EvalConfig()
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True


class TemperatureConfig(Strict):
    """LTD's fixed temperatures: τ_T for the teacher's soft labels, τ_S kept by the deployed student."""

    teacher_temperature: Annotated[float, Field(gt=0)] = 1.0
    student_temperature: Annotated[float, Field(gt=0)] = 2.0


class LTDConfig(AdversarialConfig):
    """The ``ltd`` recipe: PGD-AT against the teacher's low-temperature soft labels."""

    method: Literal["ltd"] = "ltd"
    train_attack: AttackConfig = AttackConfig()
    ltd: TemperatureConfig = TemperatureConfig()


class PGDATConfig(AdversarialConfig):
    """The ``pgd-at`` recipe: PGD adversarial training with one-hot labels."""

    method: Literal["pgd-at"] = "pgd-at"
    train_attack: AttackConfig = AttackConfig()


class DefensiveConfig(AdversarialConfig):
    """The ``defensive-distillation`` recipe: teacher and student trained at T, deployed at T = 1."""

    method: Literal["defensive-distillation"] = "defensive-distillation"
    temperature: Annotated[float, Field(gt=0)] = 100.0
    distill_teacher: TrainConfig = TrainConfig(model="student-cnn", epochs=40, lr=5e-2)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=40, lr=5e-2)


# -- objectives and forwards -------------------------------------------------------------------------
def supervised_objective() -> Objective:
    """Cross-entropy against the labels."""
    return Objective(Term("ce", cross_entropy, student="logits", target="label"))


def ltd_objective(teacher_temperature: float) -> Objective:
    """CE(softmax(f_T(x)/τ_T), softmax(student logits)); the student's logits already carry 1/τ_S."""
    return Objective(Term("ltd", ltd_cross_entropy, student="logits", teacher="logits",
                          teacher_temperature=check_temperature(teacher_temperature, "teacher_temperature")))


def label_attack_forward(attack: PGD) -> AdversarialForward:
    """PGD-AT's forward: the student trains on PGD inputs that raise its CE against the one-hot labels."""
    return AdversarialForward(lambda model, batch: attack(model, batch["input"], batch["label"]))


def soft_label_attack_forward(attack: PGD, teacher: nn.Module, teacher_temperature: float) -> AdversarialForward:
    """LTD's forward: PGD raises CE(q(x), p(x + δ)) with q the teacher's soft labels on the clean x."""
    check_temperature(teacher_temperature, "teacher_temperature")

    def perturb(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            q = soft_labels(teacher(batch["input"]), teacher_temperature)
        return attack(model, batch["input"], q)

    return AdversarialForward(perturb)


# -- the plans ---------------------------------------------------------------------------------------
class AdversarialPlan:
    """Shared plan: a cached clean reference model, one student per seed, attacks, a report."""

    title = "adversarial robustness on digits"
    role = "student"

    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config
        self.eval_attack = config.eval.attack.build("ce")  # validates the attack before any training

    # pieces a subclass fills in
    def train_student(self, seed: int, splits: dict[str, DigitsDataset], teacher: nn.Module, out: Path,
                      backend: Backend, progress: Any, resume: bool) -> nn.Module:
        """Train one student and return the deployed model (its temperature included)."""
        raise NotImplementedError

    def deployed(self, seed: int) -> nn.Module:
        """The untrained deployed-model skeleton whose weights ``final.safetensors`` holds."""
        raise NotImplementedError

    def describe(self) -> str:
        """One paragraph on the method's settings for the report."""
        raise NotImplementedError

    def checkpoint_model(self, seed: int) -> nn.Module:
        """The skeleton ``final.safetensors`` was saved from (default: the deployed model)."""
        return self.deployed(seed)

    def deploy(self, trained: nn.Module) -> nn.Module:
        """The model attacked at test time, from the trained one (default: itself)."""
        return trained

    # shared pieces
    def _splits(self) -> dict[str, DigitsDataset]:
        c = self.config.data
        return make_splits(c.source, train_size=c.train_size, val_size=c.val_size, test_size=c.test_size, seed=0)

    def _fit(self, model: nn.Module, train: TrainConfig, objective: Objective, seed: int, splits, out: Path,
             backend: Backend, label: str, progress, resume: bool, **options: Any) -> nn.Module:
        return fit(model, single_phase(objective, train), splits, out, backend, label, progress, seed=seed,
                   batch_size=train.batch_size, config={"recipe": self.config.model_dump(), "role": label,
                                                        "seed": seed}, resume=resume, **options)

    def _model(self, name: str, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(name)

    def _teacher(self, splits, out: Path, backend: Backend, progress, resume: bool) -> tuple[nn.Module, str]:
        def train(model: nn.Module) -> nn.Module:
            return self._fit(model, self.config.teacher, supervised_objective(), 0, splits, out / "teacher",
                             backend, "clean teacher", progress, resume)

        teacher, note = cached_model(lambda: self._model(self.config.teacher.model, 0), train, "digits-clean",
                                       self.config.reuse_teacher, data=self.config.data.model_dump(),
                                       teacher=self.config.teacher.model_dump())
        return teacher.to(backend.device).eval(), note

    def attacks(self, model: nn.Module, transfer_source: nn.Module) -> dict[str, tuple[PGD | None, nn.Module | None]]:
        """The named test attacks on ``model``: clean, PGD (CE), CW margin, PGD on the logits ×
        ``logit_scale`` (``scaled``) and × ``rescale`` (``rescaled``), PGD built on ``transfer_source``."""
        return {"clean": (None, None), "pgd": (self.eval_attack, None),
                "cw": (self.config.eval.attack.build("cw"), None),
                "scaled": (self.eval_attack, LogitScale(model, self.config.eval.logit_scale)),
                "rescaled": (self.eval_attack, LogitScale(model, self.config.eval.rescale)),
                "transfer": (self.eval_attack, transfer_source)}

    def _score(self, model: nn.Module, loader, transfer_source: nn.Module) -> dict[str, Any]:
        scores: dict[str, Any] = robust_accuracy(model, loader, self.attacks(model, transfer_source),
                                                 transfer=["transfer"])
        a = self.config.eval.attack
        sweep = {}
        for eps in self.config.eval.sweep:
            step = a.step_size * eps / a.epsilon if a.epsilon > 0 else a.step_size
            attack = PGD(eps, step if step > 0 else a.step_size, a.steps, mean=MEAN, std=STD)
            sweep[f"{eps:g}"] = robust_accuracy(model, loader, {"pgd": (attack, None)})["pgd"]
        scores["sweep"] = sweep
        return scores

    def run(self, context: RunContext) -> Path:
        """Train the reference teacher and a student per seed, attack them, write the report."""
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, self.config.model_dump(), self.config.seeds[0], backend)
        splits = self._splits()
        students: dict[int, nn.Module] = {}
        with progress_bar() as progress:
            teacher, note = self._teacher(splits, top.path, backend, progress, context.resume)
            for seed in self.config.seeds:
                students[seed] = self.train_student(seed, splits, teacher, top.path / f"{self.role}-seed{seed}",
                                                    backend, progress, context.resume).eval()
        split = self.config.eval.split
        console.print(f"attacking the {split} split")
        loader = [backend.to_device(b) for b in DataLoader(splits[split], batch_size=self.config.eval.batch_size)]
        teacher_scores = robust_accuracy(teacher, loader, {"clean": (None, None), "pgd": (self.eval_attack, None)})
        results: dict[str, Any] = {"method": self.config.method, "teacher": teacher_scores,
                                   "seeds": {str(s): self._score(m, loader, teacher) for s, m in students.items()}}
        results["summary"] = summarise(results["seeds"])
        results["checks"] = checks(results["summary"])
        top.write_json("results.json", results)
        self._report(top, results, note, context)
        return top.path

    def _report(self, top: RunDir, results: dict[str, Any], note: str, context: RunContext) -> Path:
        e = self.config.eval
        rows = [summary_row(self.config.method, results["seeds"])]
        rows.append({"model": "clean teacher (transfer source)",
                     **{k: f"{100 * results['teacher'][k]:.2f}" for k in ("clean", "pgd")}})
        per_seed = [{"seed": s, **{k: 100 * r[k] for k in COLUMNS}} for s, r in results["seeds"].items()]
        sweep_png = plot_sweep({self.config.method: results["seeds"]}, top.plots / "epsilon_sweep.png")
        bars_png = plot_bars({k: 100 * results["summary"][k]["mean"] for k in COLUMNS},
                             top.plots / "robust_accuracy.png", title=f"{self.config.method}: accuracy under attack",
                             ylabel="accuracy (%)")
        summary = (f"{self.describe()}\n\nData: {self.config.data.source}, {self.config.data.train_size} train / "
                   f"{self.config.data.val_size} val / {self.config.data.test_size} test. Attacks on the {e.split} "
                   f"split: L∞ ε = {e.attack.epsilon} (pixel units), PGD-{e.attack.steps} with α = "
                   f"{e.attack.step_size} and a random start, against the deployed model (CE on the labels, or the "
                   f"CW margin); `scaled` and `rescaled` attack the deployed logits × {e.logit_scale:g} and × "
                   f"{e.rescale:g}; `transfer` is PGD on the clean teacher ({note}); `worst` is the per-sample worst "
                   f"case over every white-box attack. Each student is its last epoch. Accuracies in %, mean ± std "
                   f"over {len(self.config.seeds)} seed(s).\n")
        return write_report(top, f"{self.title} on real digits", [
            ("Summary", summary),
            (f"Results ({e.split} split)", markdown_table(rows)),
            ("Gradient-masking checks", checks_markdown(results["checks"])),
            ("Per seed", markdown_table(per_seed, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: {context.precision}.\n"),
        ], plots=[("Robust accuracy against ε (PGD, mean over seeds)", sweep_png),
                  ("Accuracy under each attack", bars_png)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Clean and PGD accuracy of the final deployed students of a finished run."""
        backend = Backend(device=device)
        test = self._splits()["test"]
        loader = [backend.to_device(b) for b in DataLoader(test, batch_size=self.config.eval.batch_size)]
        scores = {}
        for seed in self.config.seeds:
            trained = load_weights(self.checkpoint_model(seed), Path(run) / f"{self.role}-seed{seed}" /
                                   "checkpoints" / "final.safetensors")
            model = self.deploy(trained).to(backend.device)
            result = robust_accuracy(model, loader, {"clean": (None, None), "pgd": (self.eval_attack, None)})
            scores.update({f"seed{seed}/{k}": v for k, v in result.items()})
        return scores


class LTDPlan(AdversarialPlan):
    """LTD: PGD-AT against a clean teacher's soft labels at τ_T, student deployed at τ_S."""

    title = "LTD (low temperature distillation)"

    def __init__(self, config: LTDConfig) -> None:
        super().__init__(config)
        self.config: LTDConfig = config
        self.train_attack = config.train_attack.build("ce")

    def deployed(self, seed: int) -> nn.Module:
        """``LogitScale(student, 1/τ_S)``."""
        return LogitScale(self._model(self.config.student.model, seed), 1.0 / self.config.ltd.student_temperature)

    def train_student(self, seed, splits, teacher, out, backend, progress, resume) -> nn.Module:
        """PGD-AT on ``CE(q(x), p(x_adv))`` through ``Distiller`` (teacher on the clean x)."""
        t = self.config.ltd.teacher_temperature
        return self._fit(self.deployed(seed), self.config.student, ltd_objective(t), seed, splits, out, backend,
                         f"ltd s{seed}", progress, resume,
                         teacher=FrozenTeacher(teacher, forward=default_forward),
                         forward=soft_label_attack_forward(self.train_attack, teacher, t))

    def describe(self) -> str:
        """Settings paragraph."""
        c, a = self.config, self.config.train_attack
        return (f"LTD: PGD-{a.steps} adversarial training (ε = {a.epsilon}, α = {a.step_size}) against soft labels "
                f"softmax(f_T(x)/τ_T) of a clean-trained {c.teacher.model} teacher with τ_T = "
                f"{c.ltd.teacher_temperature:g}; student {c.student.model} with logits divided by τ_S = "
                f"{c.ltd.student_temperature:g} in training and at test. {c.student.epochs} epochs, AdamW lr "
                f"{c.student.lr}, cosine decay.")


class PGDATPlan(AdversarialPlan):
    """PGD-AT with one-hot labels."""

    title = "PGD adversarial training"

    def __init__(self, config: PGDATConfig) -> None:
        super().__init__(config)
        self.config: PGDATConfig = config
        self.train_attack = config.train_attack.build("ce")

    def deployed(self, seed: int) -> nn.Module:
        """The plain student."""
        return self._model(self.config.student.model, seed)

    def train_student(self, seed, splits, teacher, out, backend, progress, resume) -> nn.Module:
        """CE on PGD inputs against the labels, through ``Distiller``."""
        return self._fit(self.deployed(seed), self.config.student, supervised_objective(), seed, splits, out,
                         backend, f"pgd-at s{seed}", progress, resume, forward=label_attack_forward(self.train_attack))

    def describe(self) -> str:
        """Settings paragraph."""
        c, a = self.config, self.config.train_attack
        return (f"PGD-AT (one-hot labels): PGD-{a.steps} (ε = {a.epsilon}, α = {a.step_size}); student "
                f"{c.student.model}, {c.student.epochs} epochs, AdamW lr {c.student.lr}, cosine decay.")


class DefensivePlan(AdversarialPlan):
    """Defensive distillation: teacher and student trained at T, the student deployed at T = 1."""

    title = "Defensive distillation (gradient-masking foil)"

    def __init__(self, config: DefensiveConfig) -> None:
        super().__init__(config)
        self.config: DefensiveConfig = config

    def deployed(self, seed: int) -> nn.Module:
        """The plain student (T = 1 at test)."""
        return self._model(self.config.student.model, seed)

    def train_student(self, seed, splits, teacher, out, backend, progress, resume) -> nn.Module:
        """Teacher: CE on logits/T. Student: CE against softmax(teacher/T) on its logits/T. No AT."""
        c = self.config
        scale = 1.0 / c.temperature
        hot_teacher = self._fit(LogitScale(self._model(c.distill_teacher.model, seed + 1000), scale), c.distill_teacher,
                                supervised_objective(), seed, splits, out.with_name(out.name + "-teacher"), backend,
                                f"dd teacher s{seed}", progress, resume)
        student = self._fit(self.checkpoint_model(seed), c.student, ltd_objective(c.temperature), seed,
                            splits, out, backend, f"dd student s{seed}", progress, resume,
                            teacher=FrozenTeacher(hot_teacher.model))
        return self.deploy(student)

    def checkpoint_model(self, seed: int) -> nn.Module:
        """The T-scaled wrapper the student was trained (and checkpointed) as."""
        return LogitScale(self.deployed(seed), 1.0 / self.config.temperature)

    def deploy(self, trained: nn.Module) -> nn.Module:
        """Drop the training temperature: T = 1 at test."""
        return trained.model

    def describe(self) -> str:
        """Settings paragraph."""
        c = self.config
        return (f"Defensive distillation: a {c.distill_teacher.model} teacher trained with CE on logits/T, then the "
                f"{c.student.model} student trained on softmax(teacher/T) with its logits/T, T = {c.temperature:g}, "
                f"no adversarial examples; deployed and attacked at T = 1. {c.student.epochs} epochs, AdamW lr "
                f"{c.student.lr}.")


# -- summaries, checks, plots ------------------------------------------------------------------------
COLUMNS = ("clean", "pgd", "cw", "scaled", "rescaled", "transfer", "worst")

#: Tolerances of the gradient-masking checks, in accuracy points (fractions here).
COLLAPSE = 0.20
STABLE = 0.05


def summarise(seeds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of every column and every ε of the sweep."""
    summary: dict[str, Any] = {}
    for key in COLUMNS:
        mean, std = mean_std([r[key] for r in seeds.values()])
        summary[key] = {"mean": mean, "std": std}
    first = next(iter(seeds.values()))
    summary["sweep"] = {eps: mean_std([r["sweep"][eps] for r in seeds.values()])[0] for eps in first["sweep"]}
    return summary


def checks(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The masking checks on mean accuracies: (i) scaled-logit attack, (ii) scale/margin stability,
    (iii) transfer ≥ white-box, (iv) the ε sweep starts at clean accuracy and does not rise."""
    m = {k: summary[k]["mean"] for k in COLUMNS}
    sweep = [(float(e), a) for e, a in summary["sweep"].items()]
    sweep.sort()
    monotone = all(b <= a + 0.01 for (_, a), (_, b) in pairwise(sweep))
    at_zero = [a for e, a in sweep if e == 0.0]
    return {
        "i_scaled_attack_collapse": {
            "value": m["pgd"] - m["scaled"], "passed": m["pgd"] - m["scaled"] < COLLAPSE,
            "rule": f"PGD accuracy − accuracy under the scaled-logit attack < {100 * COLLAPSE:.0f} points "
                    "(a larger drop means the PGD number was masked)"},
        "ii_stable_across_scale_and_loss": {
            "value": m["pgd"] - min(m["cw"], m["scaled"], m["rescaled"]),
            "passed": m["pgd"] - min(m["cw"], m["scaled"], m["rescaled"]) <= STABLE,
            "rule": f"PGD accuracy − the lowest accuracy under the CW-margin or either rescaled-logit attack ≤ "
                    f"{100 * STABLE:.0f} points (another scale or loss finds no hidden weakness)"},
        "iii_transfer_not_below_white_box": {
            "value": m["transfer"] - m["pgd"], "passed": m["transfer"] >= m["pgd"],
            "rule": "transfer accuracy ≥ white-box PGD accuracy"},
        "iv_epsilon_sweep": {
            "value": [a for _, a in sweep],
            "passed": monotone and (not at_zero or abs(at_zero[0] - m["clean"]) < 1e-9),
            "rule": "accuracy at ε = 0 equals clean accuracy and does not rise with ε (1-point slack)"},
    }


def checks_markdown(result: Mapping[str, Mapping[str, Any]]) -> str:
    """The checks as a table."""
    rows = []
    for name, check in result.items():
        value = check["value"]
        shown = ", ".join(f"{100 * v:.1f}" for v in value) if isinstance(value, list) else f"{100 * value:+.2f}"
        rows.append({"check": name, "value (points)": shown, "passed": "yes" if check["passed"] else "**no**",
                     "rule": check["rule"]})
    return markdown_table(rows)


def summary_row(name: str, seeds: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """One table row: mean ± std (in %) of every column."""
    return {"model": name, **{k: format_mean_std([r[k] for r in seeds.values()], scale=100) for k in COLUMNS}}


def plot_sweep(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], path: Path) -> Path:
    """Accuracy (%) against ε, one line per method (mean over seeds, error bars = std)."""
    import matplotlib.pyplot as plt  # kd_core.plots already selected the Agg backend

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, seeds in runs.items():
        first = next(iter(seeds.values()))["sweep"]
        eps = sorted(first, key=float)
        stats = [mean_std([100 * r["sweep"][e] for r in seeds.values()]) for e in eps]
        ax.errorbar([float(e) for e in eps], [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o",
                    capsize=3, label=name)
    ax.set_xlabel("ε (L∞, pixel units)")
    ax.set_ylabel("accuracy under PGD (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def build(config: AdversarialConfig) -> AdversarialPlan:
    """The plan for a validated ``ltd``, ``pgd-at`` or ``defensive-distillation`` config."""
    if isinstance(config, LTDConfig):
        return LTDPlan(config)
    if isinstance(config, PGDATConfig):
        return PGDATPlan(config)
    return DefensivePlan(config)


METHOD = Method(name="ltd", config_model=LTDConfig, build=build, domain="vision", recipes=RECIPES,
                summary="LTD: PGD-AT with low-temperature teacher soft labels, tau_S kept at test (digits)")
PGD_AT = Method(name="pgd-at", config_model=PGDATConfig, build=build, domain="vision", recipes=RECIPES,
                summary="PGD adversarial training with one-hot labels (LTD baseline, digits)")
DEFENSIVE_DISTILLATION = Method(name="defensive-distillation", config_model=DefensiveConfig, build=build,
                                domain="vision", recipes=RECIPES,
                                summary="Defensive distillation T=100 train / T=1 test: the gradient-masking foil")
