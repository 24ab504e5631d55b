"""LTD, PGD-AT, defensive distillation and standard training as arms of one study, with gradient-masking checks.

Chen and Lee, "LTD: Low Temperature Distillation for Robust Adversarial Training" (later "…for Gradient
Masking-free Adversarial Training"), arXiv:2111.02331. LTD is PGD adversarial training whose one-hot
labels are replaced by soft labels ``q(x) = softmax(f_T(x)/τ_T)`` of a clean-trained teacher at a low,
fixed τ_T; the student's logits are divided by a fixed τ_S that is kept at test time (the deployed model
is ``LogitScale(student, 1/τ_S)``). Per batch: ``x_adv = PGD_{ε,α,K}`` maximising ``CE(q(x), p(x+δ))``,
then ``min_θ CE(q(x), p(x_adv))`` with ``p = softmax(f_S/τ_S)``; the teacher always sees the clean x.

Arms, from the same student initialisation and data order per seed: ``ltd``; ``pgd-at`` (Madry et al.,
arXiv:1706.06083), the same adversarial training on one-hot labels (LTD's teacher-free twin); ``trades`` (Zhang
et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019) and ``ltd-trades``, LTD's
TRADES form: ``CE(y, p(x)) + β·KL(p(x) ‖ p(x_adv))`` with y the one-hot label or LTD's soft label q(x), x_adv
from PGD on ``KL(p(x) ‖ p(x + δ))`` (a uniform random start in the ball, where TRADES starts from x + 0.001·N(0, 1);
clean and adversarial inputs pass through the model as one batch, so BatchNorm normalises them together);
``defensive-distillation`` (Papernot et al., arXiv:1511.04508), a teacher of the student's architecture and
the student both trained at T = 100 without adversarial examples, the student deployed at T = 1 (the
gradient-masking foil); ``standard``, cross-entropy on clean inputs. The study's teacher is the clean-trained
reference: LTD's soft-label source and every arm's transfer-attack source. Adversarial inputs come from the
``Distiller``'s ``forward`` hook (``kd_core.adversarial.AdversarialForward``).

The task's evaluator attacks each deployed student: clean accuracy, PGD-K on the cross-entropy and on the CW
margin and on AutoAttack's scale-invariant DLR loss (Croce and Hein, ICML 2020; ``eval.restarts`` random restarts
for the CE and DLR attacks), PGD on the logits × ``eval.logit_scale`` and × ``eval.rescale``, a transfer attack
from the teacher, an ε sweep, and the headline ``robust_accuracy``, the per-sample worst case over the white-box
attacks (an offline stand-in for the paper's AutoAttack ensemble, which defensive distillation's masked gradients
do not fool). The masking checks on those numbers are added to the study's report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from kd_core import Objective, Term
from kd_core.adversarial import AdversarialForward, Perturb, eval_mode
from kd_core.engine import Phase, classification_evaluator
from kd_core.errors import ConfigError
from kd_core.losses import check_same_shape, check_temperature
from kd_core.metrics import classification_metrics, format_mean_std, mean_std
from kd_core.plots import save_figure
from kd_core.recipes import Method, RunContext
from kd_core.report import markdown_table
from kd_core.signals import FrozenTeacher, Signal, default_forward
from kd_core.study import Arm, ArmRun, TrainSpec, compare_arms, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task, classification_outputs
from pydantic import Field, model_validator
from torch import nn

from kd_vision.attacks import PGD, LogitScale, robust_accuracy
from kd_vision.data.digits import MEAN, STD
from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.tasks import BUILT_IN_SOURCES, VisionData, vision_task

ArmName = Literal["ltd", "pgd-at", "ltd-trades", "trades", "defensive-distillation", "standard"]
NAMES = {"ltd": "LTD", "pgd-at": "PGD-AT", "ltd-trades": "LTD (TRADES form)", "trades": "TRADES",
         "defensive-distillation": "defensive distillation", "standard": "standard training"}
#: The (a, b) pairs compared on the headline ("a beats b"), in report order, where both arms run.
PAIRS = [("ltd", "pgd-at"), ("ltd-trades", "trades"), ("ltd", "defensive-distillation"),
         ("pgd-at", "defensive-distillation"), ("ltd", "standard"), ("pgd-at", "standard"),
         ("defensive-distillation", "standard")]
#: The arms that train without a teacher (LTD's arms need one).
TEACHER_FREE = ("pgd-at", "trades", "standard")
ATTACKS = ("pgd", "cw", "dlr", "scaled", "rescaled", "transfer")
COLUMNS = ("accuracy", *(f"{a}_accuracy" for a in ATTACKS), "robust_accuracy")
#: Tolerances of the gradient-masking checks (fractions of samples).
COLLAPSE, STABLE = 0.20, 0.05


# -- the LTD loss ------------------------------------------------------------------------------------
def soft_labels(teacher_logits: torch.Tensor, teacher_temperature: float) -> torch.Tensor:
    """LTD's soft labels ``q = softmax(z_T / τ_T)`` (τ_T < 1 sharpens, τ_T > 1 softens)."""
    t = check_temperature(teacher_temperature, "teacher_temperature")
    return F.softmax(teacher_logits.float() / t, dim=-1)


def ltd_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, teacher_temperature: float = 1.0,
                      student_temperature: float = 1.0) -> torch.Tensor:
    """``mean_i −Σ_c q_ic log softmax(s_i/τ_S)_c`` with ``q = softmax(teacher/τ_T)``; no T² factor.

    LTD passes the deployed student's logits (``LogitScale`` already divided them by its τ_S) with τ_S = 1 here;
    defensive distillation passes the bare student's logits with τ_S = T.
    """
    check_same_shape(student, teacher)
    s = check_temperature(student_temperature, "student_temperature")
    q = soft_labels(teacher, teacher_temperature)
    return -(q * F.log_softmax(student.float() / s, dim=-1)).sum(-1).mean()


def ltd_objective(teacher_temperature: float, student_temperature: float = 1.0, name: str = "ltd") -> Objective:
    """CE(softmax(teacher logits/τ_T), softmax(student logits/τ_S))."""
    return Objective(Term(name, ltd_cross_entropy, student="logits", teacher="logits",
                          teacher_temperature=check_temperature(teacher_temperature, "teacher_temperature"),
                          student_temperature=check_temperature(student_temperature, "student_temperature")))


def trades_loss(student: torch.Tensor, reference: torch.Tensor, beta: float = 6.0,
                teacher_temperature: float = 1.0) -> torch.Tensor:
    """TRADES on logits ``[2B, C]`` = [clean; adversarial]: ``CE(y, p(x)) + β·KL(p(x) ‖ p(x_adv))``.

    ``reference``: int labels ``[B]`` (TRADES) or teacher logits ``[B, C]``, turned into LTD's soft labels
    ``softmax(z_T/τ_T)`` (LTD's TRADES form). The KL is averaged over the batch; gradients reach both halves.
    """
    if student.shape[0] % 2 or student.shape[0] // 2 != reference.shape[0]:
        raise ConfigError("student", f"logits of 2 × {reference.shape[0]} rows ([clean; adversarial])",
                          tuple(student.shape))
    if isinstance(beta, bool) or not isinstance(beta, int | float) or beta < 0:
        raise ConfigError("beta", "a number β ≥ 0", beta)
    clean, adversarial = student.float().chunk(2)
    if reference.dtype.is_floating_point:
        check_same_shape(clean, reference)
        ce = -(soft_labels(reference, teacher_temperature) * F.log_softmax(clean, dim=-1)).sum(-1).mean()
    else:
        ce = F.cross_entropy(clean, reference.long())
    kl = F.kl_div(F.log_softmax(adversarial, dim=-1), F.log_softmax(clean, dim=-1), log_target=True,
                  reduction="batchmean")
    return ce + beta * kl


class CleanAndAdversarialForward(AdversarialForward):
    """TRADES's forward: while training, the model sees ``[x; perturb(model, batch)]`` as one batch (logits
    ``[2B, C]``, read by :func:`trades_loss`); outside training, the clean ``x``."""

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        if not self.active(model):
            return self.base(model, batch)
        clean = batch[self.key]
        perturbed = self.perturb(model, batch).detach()
        return self.base(model, {**batch, self.key: torch.cat([clean, perturbed])})


def kl_attack(attack: PGD) -> Perturb:
    """TRADES's inner maximisation: PGD on ``KL(p(x) ‖ p(x + δ))`` (the cross-entropy against the model's own clean
    prediction, which differs from that KL by a constant in δ)."""

    def perturb(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        with torch.no_grad(), eval_mode(model):
            own = F.softmax(model(batch["input"]).float(), dim=-1)
        return attack(model, batch["input"], own)

    return perturb


def label_attack_forward(attack: PGD) -> AdversarialForward:
    """PGD-AT's forward: the student trains on PGD inputs that raise its CE against the one-hot labels."""
    return AdversarialForward(lambda model, batch: attack(model, batch["input"], batch["label"]))


def soft_label_attack_forward(attack: PGD, teacher: nn.Module, teacher_temperature: float) -> AdversarialForward:
    """LTD's forward: PGD raises CE(q(x), p(x + δ)) with q the teacher's soft labels on the clean x."""
    check_temperature(teacher_temperature, "teacher_temperature")

    def perturb(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        with torch.no_grad(), eval_mode(teacher):
            q = soft_labels(teacher(batch["input"]), teacher_temperature)
        return attack(model, batch["input"], q)

    return AdversarialForward(perturb)


# -- configs -----------------------------------------------------------------------------------------
class AttackConfig(Strict):
    """An L∞ PGD attack in pixel units: ε, step α, K steps."""

    epsilon: Annotated[float, Field(ge=0)] = 0.1
    step_size: Annotated[float, Field(gt=0)] = 0.025
    steps: Annotated[int, Field(ge=1)] = 10

    def build(self, pixels: tuple[float, float], loss: str = "ce", epsilon: float | None = None) -> PGD:
        """The ``PGD`` on inputs normalised as ``(pixel − mean) / std``; another ``epsilon`` scales α with it."""
        eps = self.epsilon if epsilon is None else epsilon
        step = self.step_size * eps / self.epsilon if self.epsilon > 0 and eps > 0 else self.step_size
        return PGD(eps, step, self.steps, loss=loss, mean=pixels[0], std=pixels[1])


class EvalConfig(Strict):
    """Test-time attacks: PGD-``steps`` (CE, CW margin and DLR), two logit-scaled attacks and an ε sweep.

    ``logit_scale`` multiplies the deployed logits before attacking (1/100 undoes defensive distillation's T);
    ``rescale`` is a second, moderate one. ``restarts``: random restarts of the CE and DLR attacks (per sample,
    the first that fools the model counts). The sweep uses α = ``step_size``·ε/``epsilon``.
    """

    attack: AttackConfig = AttackConfig(epsilon=0.1, step_size=0.0125, steps=20)
    restarts: Annotated[int, Field(ge=1)] = 1
    logit_scale: Annotated[float, Field(gt=0)] = 0.01
    rescale: Annotated[float, Field(gt=0)] = 2.0
    sweep: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.15])


class TemperatureConfig(Strict):
    """LTD's fixed temperatures: τ_T for the teacher's soft labels, τ_S kept by the deployed student."""

    teacher_temperature: Annotated[float, Field(gt=0)] = 1.0
    student_temperature: Annotated[float, Field(gt=0)] = 2.0


class TradesConfig(Strict):
    """TRADES's β: the weight of ``KL(p(x) ‖ p(x_adv))`` against the clean cross-entropy (6 in Zhang et al.)."""

    beta: Annotated[float, Field(ge=0)] = 6.0


class DefensiveConfig(Strict):
    """Defensive distillation: T, and the epochs and learning rates of its own teacher and of the student."""

    temperature: Annotated[float, Field(gt=0)] = 100.0
    teacher_epochs: Annotated[int, Field(gt=0)] = 40
    teacher_lr: Annotated[float, Field(gt=0)] = 5e-2
    epochs: Annotated[int, Field(gt=0)] = 40
    lr: Annotated[float, Field(gt=0)] = 5e-2


class Pixels(Strict):
    """How inputs were normalised: ``(pixel − mean) / std`` with pixels in [0, 1]."""

    mean: float
    std: Annotated[float, Field(gt=0)]


class AdversarialConfig(StudyRecipe):
    """The ``ltd``, ``pgd-at`` and ``defensive-distillation`` recipes (the method names the arm under test).

    ``teacher`` is the clean-trained reference model (LTD's teacher, every arm's transfer-attack source);
    ``student`` and ``train_attack`` set the ltd, pgd-at, trades, ltd-trades and standard arms' training;
    ``trades.beta`` the TRADES arms' KL weight. ``pixels`` defaults to
    the digits' MNIST statistics, (0.5, 0.5) for image folders and (0, 1) for tensors files.
    """

    method: Literal["ltd", "pgd-at", "defensive-distillation"] = "ltd"
    data: VisionData = VisionData(source="sklearn8x8", train_size=1000, val_size=200, test_size=400)
    pixels: Pixels | None = None
    teacher: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=1e-2)
    train_attack: AttackConfig = AttackConfig()
    ltd: TemperatureConfig = TemperatureConfig()
    trades: TradesConfig = TradesConfig()
    defensive: DefensiveConfig = DefensiveConfig()
    eval: EvalConfig = EvalConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["ltd", "pgd-at", "ltd-trades", "trades", "defensive-distillation", "standard"])

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> AdversarialConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        return self

    def normalisation(self) -> tuple[float, float]:
        """``(mean, std)`` of the input normalisation the attacks undo."""
        if self.pixels is not None:
            return self.pixels.mean, self.pixels.std
        scheme = self.data.source.partition(":")[0]
        return (MEAN, STD) if self.data.source in BUILT_IN_SOURCES else (0.5, 0.5) if scheme == "imagefolder" \
            else (0.0, 1.0)


# -- evaluation ----------------------------------------------------------------------------------------
def sweep_key(epsilon: float) -> str:
    """The metric name of PGD accuracy at ``epsilon`` in the ε sweep."""
    return f"pgd_eps{epsilon:g}_accuracy"


@dataclasses.dataclass
class RobustEvaluator:
    """The task's evaluator: clean metrics, accuracy under each attack, the ε sweep and ``robust_accuracy``.

    ``reference`` is the transfer-attack source; the arms set it to the study's teacher when they train (the
    teacher itself, scored before, gets no transfer attack). Attacks run with a fixed seed.
    """

    config: EvalConfig
    pixels: tuple[float, float]
    reference: nn.Module | None = None

    def __call__(self, model: nn.Module, batches: Any, forward: Any) -> dict[str, float]:
        """Metrics of the deployed ``model`` over ``batches``."""
        batches, c = list(batches), self.config
        pgd = dataclasses.replace(c.attack.build(self.pixels), restarts=c.restarts)
        attacks: dict[str, tuple[PGD | None, nn.Module | None]] = {
            "clean": (None, None), "pgd": (pgd, None), "cw": (c.attack.build(self.pixels, "cw"), None),
            "scaled": (pgd, LogitScale(model, c.logit_scale)), "rescaled": (pgd, LogitScale(model, c.rescale))}
        with torch.no_grad(), eval_mode(model):
            classes = model(batches[0]["input"][:1]).shape[-1] if batches else 0
        if classes >= 3:  # DLR ranks the top three logits
            attacks["dlr"] = (dataclasses.replace(pgd, loss="dlr"), None)
        if self.reference is not None:
            attacks["transfer"] = (pgd, self.reference)
        scores = robust_accuracy(model, batches, attacks, transfer=["transfer"])
        metrics = classification_metrics(*classification_outputs(model, batches, forward))
        metrics |= {f"{k}_accuracy": v for k, v in scores.items() if k in ATTACKS}
        metrics["robust_accuracy"] = scores["worst"]
        for eps in c.sweep:
            done = {0.0: scores["clean"], c.attack.epsilon: scores["pgd"]}
            metrics[sweep_key(eps)] = done[eps] if eps in done else robust_accuracy(
                model, batches, {"pgd": (c.attack.build(self.pixels, epsilon=eps), None)})["pgd"]
        return metrics


def _train(run: ArmRun, phases: list[Phase], signal: Signal | None = None, **options: Any) -> nn.Module:
    """Train ``run.student`` through ``phases`` on the task's train split (validation: clean metrics only)."""
    task = run.study.task
    if isinstance(task.evaluator, RobustEvaluator):
        task.evaluator.reference = run.teacher
    distiller = run.distiller(phases, signal, **options)
    distiller.fit(task.data.train, task.data.val, out=run.out, config=run.config(),
                  resume=run.resume and (run.out / "config.yaml").is_file())
    return distiller.student


# -- arms ------------------------------------------------------------------------------------------------
def arm_phases(config: AdversarialConfig, name: str) -> list[Phase]:
    """The phases one arm trains its deployed student through."""
    train = config.student.train_spec()
    if name == "ltd":
        return train.phases(ltd_objective(config.ltd.teacher_temperature))
    if name == "trades":
        return train.phases(Objective(Term("trades", trades_loss, student="logits", target="label",
                                           beta=config.trades.beta)))
    if name == "ltd-trades":
        return train.phases(Objective(Term("ltd-trades", trades_loss, student="logits", teacher="logits",
                                           beta=config.trades.beta,
                                           teacher_temperature=config.ltd.teacher_temperature)))
    if name == "defensive-distillation":
        d = config.defensive
        spec = TrainSpec(d.epochs, d.lr, train.batch_size, train.weight_decay)
        return spec.phases(ltd_objective(1.0, d.temperature, name="soft-ce"))
    return supervised_phases(train)


def _fit_defensive(config: AdversarialConfig, run: ArmRun) -> nn.Module:
    """Papernot et al.: a teacher of the student's architecture trained with CE on logits/T, then the bare student
    on CE(softmax(teacher/T), softmax(student/T)); the bare student is deployed (T = 1)."""
    d = config.defensive
    spec = TrainSpec(d.teacher_epochs, d.teacher_lr, config.student.batch_size, config.student.weight_decay)
    hot = LogitScale(run.study.task.student(run.seed + 1000), 1.0 / d.temperature)
    name = f"{run.name}-teacher"
    hot = _train(dataclasses.replace(run, name=name, student=hot, out=run.out.with_name(f"{name}-seed{run.seed}")),
                 supervised_phases(spec))
    return _train(run, arm_phases(config, run.name), FrozenTeacher(hot))


def arms(config: AdversarialConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists: the method's own is the variant, teacher-free arms are scratch."""
    attack = config.train_attack.build(config.normalisation())
    tau = config.ltd

    def fit(run: ArmRun) -> nn.Module:
        if run.name == "ltd":
            return _train(run, arm_phases(config, "ltd"), FrozenTeacher(run.teacher, forward=default_forward),
                          forward=soft_label_attack_forward(attack, run.teacher, tau.teacher_temperature))
        if run.name == "pgd-at":
            return _train(run, arm_phases(config, "pgd-at"), forward=label_attack_forward(attack))
        if run.name in ("trades", "ltd-trades"):
            signal = FrozenTeacher(run.teacher, forward=default_forward) if run.name == "ltd-trades" else None
            return _train(run, arm_phases(config, run.name), signal,
                          forward=CleanAndAdversarialForward(kl_attack(attack)))
        if run.name == "defensive-distillation":
            return _fit_defensive(config, run)
        return _train(run, arm_phases(config, "standard"))

    def deployed_ltd(seed: int) -> nn.Module:
        return LogitScale(task.student(seed), 1.0 / tau.student_temperature)

    descriptions = {
        "ltd": f"PGD-AT on softmax(f_T/τ_T), τ_T = {tau.teacher_temperature:g}; deployed at τ_S = "
               f"{tau.student_temperature:g}",
        "pgd-at": "PGD-AT on one-hot labels", "standard": "cross-entropy on clean inputs",
        "trades": f"TRADES, β = {config.trades.beta:g}, one-hot labels",
        "ltd-trades": f"TRADES, β = {config.trades.beta:g}, on softmax(f_T/τ_T), τ_T = {tau.teacher_temperature:g}; "
                      f"deployed at τ_S = {tau.student_temperature:g}",
        "defensive-distillation": f"teacher and student trained at T = {config.defensive.temperature:g}, "
                                  "deployed at T = 1, no adversarial examples"}
    built = {}
    for name in config.arms:
        own = name == config.method or (config.method == "ltd" and name == "ltd-trades")
        role = "variant" if own else "scratch" if name in TEACHER_FREE else "baseline"
        built[name] = Arm(lambda name=name: arm_phases(config, name), role=role, fit=fit,
                          student=deployed_ltd if name in ("ltd", "ltd-trades") else None,
                          batch_size=config.student.batch_size,
                          description=descriptions[name])
    return built


def compare(config: AdversarialConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """LTD against PGD-AT (the paper's claim), both against defensive distillation, everything against standard."""
    return [(a, b) for a, b in PAIRS if a in arms and b in arms]


def task(config: AdversarialConfig, context: RunContext) -> Task:
    """The vision task of ``data``, ``teacher`` and ``student``, scored by the attacks, robust accuracy first."""
    base = vision_task(config.data, config.teacher, config.student, context)
    sweep = tuple(sweep_key(e) for e in config.eval.sweep)
    return dataclasses.replace(base, evaluator=RobustEvaluator(config.eval, config.normalisation()),
                               validator=classification_evaluator, headline="robust_accuracy", gate_metric="accuracy",
                               teacher_evaluator=classification_evaluator, classifier=True,
                               percent=(*COLUMNS, "ece", *sweep))


def notes(config: AdversarialConfig, task: Task) -> str:
    """The attacks, the headline's definition and each arm's training."""
    e, a, s, d, tau = config.eval.attack, config.train_attack, config.student, config.defensive, config.ltd
    mean, std = config.normalisation()
    text = [f"robust_accuracy is the per-sample worst case over the clean input and four white-box L∞ attacks at "
            f"ε = {e.epsilon:g} (pixel units; inputs (pixel − {mean:.4g}) / {std:.4g}): PGD-{e.steps} (α = "
            f"{e.step_size:g}, random start; {config.eval.restarts} start(s) for CE and DLR) on the cross-entropy, "
            "on the CW margin, on the DLR loss, and on the deployed logits × "
            f"{config.eval.logit_scale:g} and × {config.eval.rescale:g}. The transfer attack (PGD-{e.steps} on the "
            f"clean teacher) is reported beside it. Validation during training is clean accuracy."]
    if {"ltd", "pgd-at"} & set(config.arms):
        text.append(f"ltd and pgd-at: PGD-{a.steps} adversarial training (ε = {a.epsilon:g}, α = {a.step_size:g}), "
                    f"{s.epochs} epochs, AdamW lr {s.lr}, cosine decay; ltd's labels are softmax(f_T(x)/τ_T) of the "
                    f"clean teacher with τ_T = {tau.teacher_temperature:g}, its logits divided by τ_S = "
                    f"{tau.student_temperature:g} in training and at test.")
    if {"trades", "ltd-trades"} & set(config.arms):
        text.append(f"trades and ltd-trades: the same attack budget on KL(p(x) ‖ p(x + δ)), then CE(y, p(x)) + "
                    f"{config.trades.beta:g}·KL(p(x) ‖ p(x_adv)), y one-hot (trades) or LTD's soft label "
                    "(ltd-trades, deployed at τ_S like ltd).")
    if "defensive-distillation" in config.arms:
        text.append(f"defensive-distillation: a {s.model} teacher ({d.teacher_epochs} epochs, lr {d.teacher_lr}) "
                    f"and the student ({d.epochs} epochs, lr {d.lr}) trained at T = {d.temperature:g} without "
                    "adversarial examples; the student is attacked at T = 1.")
    return " ".join(text) + (" No arm has the role kd: LTD's teacher-free twins are pgd-at and trades (the same "
                             "training on one-hot labels), and defensive distillation is the gradient-masking foil.")


# -- the report's masking section ---------------------------------------------------------------------------
def checks(means: Mapping[str, float], epsilons: Sequence[float]) -> dict[str, dict[str, Any]]:
    """The masking checks on one arm's mean metrics: (i) scaled-logit attack, (ii) scale/margin stability,
    (iii) transfer ≥ white-box, (iv) the ε sweep starts at clean accuracy and does not rise."""
    m = means
    sweep = [m[sweep_key(e)] for e in sorted(epsilons)]
    weakest = min(m["cw_accuracy"], m.get("dlr_accuracy", math.inf), m["scaled_accuracy"], m["rescaled_accuracy"])
    result = {
        "i_scaled_attack_collapse": {
            "value": m["pgd_accuracy"] - m["scaled_accuracy"], "passed": m["pgd_accuracy"] - m["scaled_accuracy"]
            < COLLAPSE, "rule": f"PGD − scaled-logit accuracy < {100 * COLLAPSE:.0f} points"},
        "ii_stable_across_scale_and_loss": {
            "value": m["pgd_accuracy"] - weakest, "passed": m["pgd_accuracy"] - weakest <= STABLE,
            "rule": f"PGD − the lowest of CW-margin, DLR and both rescaled-logit accuracies ≤ {100 * STABLE:.0f} "
                    "points"},
    }
    if math.isfinite(m.get("transfer_accuracy", math.nan)):
        result["iii_transfer_not_below_white_box"] = {
            "value": m["transfer_accuracy"] - m["pgd_accuracy"], "passed": m["transfer_accuracy"] >= m["pgd_accuracy"],
            "rule": "transfer accuracy ≥ white-box PGD accuracy"}
    result["iv_epsilon_sweep"] = {
        "value": sweep, "passed": all(b <= a + 0.01 for a, b in pairwise(sweep))
        and (0.0 not in epsilons or abs(m[sweep_key(0.0)] - m["accuracy"]) < 1e-6),
        "rule": "accuracy at ε = 0 is clean accuracy and does not rise with ε (1-point slack)"}
    return result


def plot_sweep(results: Mapping[str, Any], epsilons: Sequence[float], path: Path) -> Path:
    """PGD accuracy (%) against ε, one line per arm (mean over seeds, error bars = std)."""
    import matplotlib.pyplot as plt  # kd_core.plots already selected the Agg backend

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    eps = sorted(epsilons)
    for name, arm in results["arms"].items():
        stats = [mean_std([100 * r[sweep_key(e)] for r in arm["seeds"].values()]) for e in eps]
        ax.errorbar(eps, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=3, label=name)
    ax.set(xlabel="ε (L∞, pixel units)", ylabel="accuracy under PGD (%)", ylim=(0, 100))
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def masking_section(results: Mapping[str, Any], epsilons: Sequence[float]) -> str:
    """Markdown: accuracy under every attack per arm, paired differences in clean and PGD accuracy for the compared
    pairs, the gradient-masking checks, the ε sweep (plot at ``plots/epsilon_sweep.png``)."""
    arms = results["arms"]
    table = [{"model": name, **{("clean" if k == "accuracy" else k.removesuffix("_accuracy")): format_mean_std(
        [r.get(k, math.nan) for r in arm["seeds"].values()], scale=100) for k in COLUMNS}}
        for name, arm in arms.items()]
    paired = []
    for c in results["comparisons"]:
        for metric in ("accuracy", "pgd_accuracy"):
            d = compare_arms(results, c["a"], c["b"], metric, scale=100)
            if d is None:
                continue
            paired.append({"a − b": f"{d.a} − {d.b}", "metric": metric, "mean (points)": f"{d.mean:+.2f}",
                           "95 % CI": "n/a (n = 1)" if d.low is None else f"{d.low:+.2f} to {d.high:+.2f}",
                           "seeds": d.n, "verdict": d.verdict})
    rows, sweep = [], []
    for name, arm in arms.items():
        means = {k: mean_std([r[k] for r in arm["seeds"].values()])[0] for k in next(iter(arm["seeds"].values()))}
        for check, c in checks(means, epsilons).items():
            shown = ", ".join(f"{100 * v:.1f}" for v in c["value"]) if isinstance(c["value"], list) else \
                f"{100 * c['value']:+.2f}"
            rows.append({"arm": name, "check": check, "value (points)": shown,
                         "passed": "yes" if c["passed"] else "**no**", "rule": c["rule"]})
        sweep.append({"arm": name, **{f"ε = {e:g}": f"{100 * means[sweep_key(e)]:.1f}" for e in sorted(epsilons)}})
    return (f"Test accuracy (%) under each attack, mean ± std over seeds (`robust` is the headline):\n\n"
            f"{markdown_table(table)}\nPaired per-seed differences in clean and PGD accuracy (the same verdict rule "
            f"as above):\n\n{markdown_table(paired)}\nGradient-masking checks on the "
            f"means (a masked model fails (i)–(iii)):\n\n{markdown_table(rows)}\nPGD accuracy (%) against ε:\n\n"
            f"{markdown_table(sweep)}\n![PGD accuracy against ε](plots/epsilon_sweep.png)\n")


def sections(config: AdversarialConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The attacks, paired clean/PGD differences, masking checks and the ε sweep (with its plot) for the report."""
    epsilons = config.eval.sweep
    plot_sweep(results, epsilons, run / "plots" / "epsilon_sweep.png")
    return [("Attacks and gradient-masking checks", masking_section(results, epsilons))]


def _method(name: str, summary: str) -> Method:
    return study_method(name, AdversarialConfig, task=task, arms=arms, notes=notes, compare=compare,
                        sections=sections, teacher_training=lambda c: c.teacher.train_spec(),
                        title=lambda c, t: f"{' vs '.join(NAMES[a] for a in c.arms)}: adversarial robustness on "
                                           f"{t.description}",
                        domain="vision", summary=summary, recipes=Path(__file__).resolve().parent.parent / "recipes")


METHOD = _method("ltd", "LTD: PGD-AT with low-temperature teacher soft labels, tau_S kept at test; vs PGD-AT, "
                        "defensive distillation, standard training")
PGD_AT = _method("pgd-at", "PGD adversarial training with one-hot labels (LTD's baseline) vs standard training")
DEFENSIVE_DISTILLATION = _method("defensive-distillation", "Defensive distillation T=100 train / T=1 test: the "
                                                           "gradient-masking foil, vs standard training")
