"""BD-KD: online distillation that balances forward and reverse KL per sample, with DML and a fixed mix.

Amara, Sepahvand, Meyer, Gross and Clark, "BD-KD: Balancing the Divergences for Online Knowledge
Distillation", arXiv:2212.12965 (v1, 2022). Teacher and student are trained together from scratch. The
paper fixes the structure; the sigmoid weights and their sharpness k are our reading of its entropy-gap rule:

- student: CE(y, p_S) + λ_S·τ²·(1/B)·Σᵢ [aᵢ·KL(p_Tⁱ ‖ p_Sⁱ) + bᵢ·KL(p_Sⁱ ‖ p_Tⁱ)], with the detached entropy
  gap Δᵢ = H(p_Sⁱ) − H(p_Tⁱ), bᵢ = σ(k·Δᵢ), aᵢ = 1 − bᵢ (``kd_core.losses.balanced_kl``): a student less sure
  than its teacher leans on the reverse (mode-seeking) KL, an over-confident one on the forward (mass-covering)
  KL; k = 0 is a fixed 0.5/0.5 mix, a large k a hard switch;
- teacher (v1's loss; v2 of the paper also changes it): DML's CE(y, p_T) + λ_T·τ²·KL(p_S ‖ p_T) against the
  detached student.

Arms, from the same student initialisation and data order per seed: ``bd-kd`` (k = ``kd.sharpness``) and
``bd-kd-k<k>`` (a sweep of the sharpness, e.g. ``bd-kd-k1``, ``bd-kd-k20``); ``dml`` (Zhang et al., "Deep
Mutual Learning", arXiv:1706.00384: forward KL alone); ``fixed-mix-kd`` (forward and reverse KL at a fixed
share); ``kd``, offline Hinton KD from the study's pre-trained teacher; ``scratch``, CE alone. Each online arm
co-trains a fresh teacher network (a ``TrainableTeacher`` built per run by the arm's signal factory, seeded
from the run's seed) on the students' train split and scores it on the test split at the end
(``co_teacher.json``). Every arm writes its student's mean confidence against its accuracy on test
(``confidence.json``); every BD-KD arm writes the distribution of its per-sample weights bᵢ per epoch
(``mix_weights.json``). Symmetric label noise on the train labels (and the pre-trained teacher's pool) is an
option (``noise.rate``, off by default: the paper's setting is clean labels and students that grow
over-confident); val and test stay clean. The paper claims a better-calibrated (lower ECE) and more accurate
student than DML's and offline KD's: the report compares the arms on accuracy, then on student ECE and on the
co-trained teachers' accuracy. Models: any vision spec, or ``mlp-<w1>-<w2>...`` (the experiment's MLPs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from kd_core import Objective, Phase, Term, adamw
from kd_core.engine import Callback, Distiller, FitResult
from kd_core.errors import ConfigError
from kd_core.losses import balanced_kl, cross_entropy, kl_divergence
from kd_core.metrics import mean_std
from kd_core.plots import save_figure
from kd_core.recipes import Method, RunContext
from kd_core.report import markdown_table
from kd_core.signals import TrainableTeacher
from kd_core.specs import load_weights_into
from kd_core.stats import PairedComparison
from kd_core.study import Arm, Role, compare_arms
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.study_report import comparison_sentence
from kd_core.task import Splits, Task, classification_outputs
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import Dataset, Subset

from kd_vision.data.noise import NoisyLabels
from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.models.mlp import build_mlp, is_mlp_spec
from kd_vision.tasks import VisionData, vision_task

ARMS = ("scratch", "kd", "dml", "fixed-mix-kd", "bd-kd")
ONLINE = ("dml", "fixed-mix-kd", "bd-kd")
ROLES: dict[str, Role] = {"scratch": "scratch", "kd": "kd"}
_SWEEP = re.compile(r"bd-kd-k(\d+(?:\.\d+)?)")
#: The co-trained teacher of seed s starts from seed TEACHER_SEED + s.
TEACHER_SEED = 10_000
#: The quantiles of the mix weights bᵢ logged per epoch, and the number of equal-width histogram bins over [0, 1].
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HISTOGRAM_BINS = 20


# -- arm names ---------------------------------------------------------------------------------------
def check_sharpness(sharpness: Any) -> float:
    """Return BD-KD's sharpness k as a float, or raise ``ConfigError`` unless it is a finite number ≥ 0."""
    if isinstance(sharpness, bool) or not isinstance(sharpness, int | float) or not math.isfinite(sharpness) \
            or sharpness < 0:
        raise ConfigError("sharpness", "a finite number >= 0 (k in b = sigmoid(k * entropy gap))", sharpness)
    return float(sharpness)


def sweep_arm(sharpness: float) -> str:
    """The name of the BD-KD arm with sharpness k: ``bd-kd-k5``, ``bd-kd-k0.5``."""
    name = f"bd-kd-k{check_sharpness(sharpness):g}"
    if _SWEEP.fullmatch(name) is None:
        raise ConfigError("sharpness", "a k written in plain digits (e.g. 5, 0.5, 20)", sharpness)
    return name


def arm_sharpness(name: str, default: float) -> float | None:
    """BD-KD's k for arm ``name``: ``default`` (``kd.sharpness``) for ``bd-kd``, the number in ``bd-kd-k<k>``,
    None for an arm that is not BD-KD."""
    if name == "bd-kd":
        return default
    match = _SWEEP.fullmatch(name)
    return float(match.group(1)) if match else None


def is_online(name: str) -> bool:
    """Whether arm ``name`` co-trains a teacher (DML, the fixed mix and every BD-KD arm)."""
    return name in ONLINE or _SWEEP.fullmatch(name) is not None


def check_arm(name: Any) -> str:
    """``name`` if it names an arm (one of ``ARMS`` or ``bd-kd-k<k>``), else a ``ConfigError``."""
    if not isinstance(name, str) or (name not in ARMS and _SWEEP.fullmatch(name) is None):
        raise ConfigError("arms", f"arm names among {list(ARMS)} or 'bd-kd-k<k>' (e.g. 'bd-kd-k20')", name)
    return name


def arm_role(name: str, method: str) -> Role:
    """``scratch`` and ``kd`` by name; the method's own arm (for ``bd-kd``: every BD-KD arm) is the variant,
    any other a baseline."""
    if name in ROLES:
        return ROLES[name]
    own = name == method or (method == "bd-kd" and arm_sharpness(name, 0.0) is not None)
    return "variant" if own else "baseline"


# -- config ------------------------------------------------------------------------------------------
class NoiseConfig(Strict):
    """Optional symmetric label noise on the train split (and the teacher's pool): the rate (0: clean labels,
    the default) and the draw's seed."""

    rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: Annotated[int, Field(ge=0)] = 0


class OnlineKDConfig(Strict):
    """τ, the KD weights λ_S (student) and λ_T (teacher), BD-KD's sharpness k and the fixed mix's reverse share."""

    temperature: Annotated[float, Field(gt=0)] = 1.0
    student_weight: Annotated[float, Field(ge=0)] = 1.0
    teacher_weight: Annotated[float, Field(ge=0)] = 1.0
    sharpness: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    reverse_share: Annotated[float, Field(ge=0, le=1)] = 0.5


class BDKDConfig(StudyRecipe):
    """The ``bd-kd``, ``dml`` and ``fixed-mix-kd`` recipes (the method names the arm under test).

    ``teacher``: the co-trained teachers' network and AdamW settings, and how the ``kd`` arm's teacher is
    pre-trained; ``student.epochs`` is every arm's budget (online arms train both networks that long).
    ``arms``: names among ``ARMS`` and ``bd-kd-k<k>`` (BD-KD at sharpness k, for a sweep).
    """

    method: Literal["bd-kd", "dml", "fixed-mix-kd"] = "bd-kd"
    data: VisionData = VisionData(source="sklearn8x8", train_size=1000, val_size=200, test_size=597)
    noise: NoiseConfig = NoiseConfig()
    teacher: TrainConfig = TrainConfig(model="mlp-512-512", epochs=80, lr=1e-3)
    student: TrainConfig = TrainConfig(model="mlp-12", epochs=80, lr=1e-3)
    kd: OnlineKDConfig = OnlineKDConfig()
    offline: KDConfig = KDConfig()
    arms: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["scratch", "kd", "dml", "bd-kd"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2, 3, 4])

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ARMS and _SWEEP.fullmatch(a) is None]
        if bad:
            raise ValueError(f"arm names among {list(ARMS)} or 'bd-kd-k<k>' (e.g. 'bd-kd-k20'), received {bad}")
        return value

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> BDKDConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if not any(arm_role(a, self.method) == "variant" for a in self.arms):
            own = "'bd-kd' or a 'bd-kd-k<k>' arm" if self.method == "bd-kd" else repr(self.method)
            raise ValueError(f"arms must include the method's own arm ({own}), received {self.arms}")
        return self


# -- the mix weights ---------------------------------------------------------------------------------
def mix_weights(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                sharpness: float = 5.0) -> torch.Tensor:
    """BD-KD's per-sample reverse-KL weights bᵢ = σ(k·(H(p_Sⁱ) − H(p_Tⁱ))) at temperature τ, detached, as
    ``balanced_kl`` weighs its rows (the forward KL gets 1 − bᵢ)."""
    with torch.no_grad():
        log_s = F.log_softmax(student.float() / temperature, dim=-1)
        log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
        gap = -(log_s.exp() * log_s).sum(-1) + (log_t.exp() * log_t).sum(-1)
        return torch.sigmoid(check_sharpness(sharpness) * gap)


class MixWeightRecorder:
    """``balanced_kl`` as a term's loss that also keeps every training step's weights bᵢ (``mix_weights``) until
    ``drain`` (steps under ``torch.no_grad`` are not kept)."""

    __name__ = "balanced_kl"

    def __init__(self) -> None:
        self._steps: list[torch.Tensor] = []

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                 sharpness: float = 5.0, t2_scale: bool = True, reduction: str = "mean") -> torch.Tensor:
        """``balanced_kl(student, teacher, ...)``; records the batch's bᵢ when gradients are on."""
        if torch.is_grad_enabled():
            self._steps.append(mix_weights(student, teacher, temperature, sharpness))
        return balanced_kl(student, teacher, temperature=temperature, sharpness=sharpness, t2_scale=t2_scale,
                           reduction=reduction)  # type: ignore[arg-type]

    def drain(self) -> torch.Tensor:
        """Every weight recorded since the last call (1-D, float32, on the CPU); the record is then emptied."""
        weights = torch.cat(self._steps).float().cpu() if self._steps else torch.empty(0)
        self._steps = []
        return weights


def summarize_mix_weights(weights: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``n``, ``mean``, the ``QUANTILES`` (``q05`` ... ``q95``, linear interpolation), ``above_half`` (the share
    of samples whose reverse-KL weight exceeds 0.5) and ``histogram`` (counts in ``bins`` equal-width bins over
    [0, 1], the last one closed) of one epoch's weights; only ``n`` = 0 for none."""
    if weights.numel() == 0:
        return {"n": 0}
    w = weights.detach().float().flatten().cpu()
    quantiles = torch.quantile(w, torch.tensor(QUANTILES))
    return {"n": w.numel(), "mean": float(w.mean()),
            **{f"q{round(100 * q):02d}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
            "above_half": float((w > 0.5).float().mean()),
            "histogram": [int(c) for c in torch.histc(w, bins=bins, min=0.0, max=1.0).tolist()]}


def confidence_summary(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean top-class probability (``confidence``), ``accuracy`` and their difference ``overconfidence``
    (> 0: the model is surer than it is right)."""
    confidence, predicted = F.softmax(logits.float(), dim=-1).max(dim=-1)
    mean, accuracy = float(confidence.mean()), float((predicted == labels).float().mean())
    return {"confidence": mean, "accuracy": accuracy, "overconfidence": mean - accuracy}


# -- objectives --------------------------------------------------------------------------------------
def student_objective(arm: str, kd: OnlineKDConfig) -> Objective:
    """The student's loss: CE, plus λ_S·τ²·(forward KL | fixed mix | balanced KL at the arm's k) for the online
    arms. A BD-KD arm's balanced term records its weights bᵢ (``MixWeightRecorder``)."""
    check_sharpness(kd.sharpness)
    ce = Term("ce", cross_entropy, student="logits", target="label")
    tau, weight, share = kd.temperature, kd.student_weight, kd.reverse_share
    sharpness = arm_sharpness(arm, kd.sharpness)
    if arm == "scratch":
        return Objective(ce)
    if arm == "dml":
        return Objective(ce, Term("kd_forward", kl_divergence, teacher="logits", weight=weight, temperature=tau,
                                  direction="forward"))
    if arm == "fixed-mix-kd":
        return Objective(ce, Term("kd_forward", kl_divergence, teacher="logits", weight=weight * (1 - share),
                                  temperature=tau, direction="forward"),
                         Term("kd_reverse", kl_divergence, teacher="logits", weight=weight * share,
                              temperature=tau, direction="reverse"))
    if sharpness is not None:
        return Objective(ce, Term("kd_balanced", MixWeightRecorder(), teacher="logits", weight=weight,
                                  temperature=tau, sharpness=sharpness))
    raise ConfigError("arm", f"one of {['scratch', *ONLINE]} or 'bd-kd-k<k>'", arm)


def teacher_objective(kd: OnlineKDConfig) -> Objective:
    """The co-trained teacher's loss (v1, DML): CE(y, p_T) + λ_T·τ²·KL(p_S ‖ p_T).

    A ``TrainableTeacher`` objective sees the teacher's outputs as "student" and the detached student's as
    "teacher", so the forward direction here is KL(p_S ‖ p_T).
    """
    return Objective(Term("ce", cross_entropy, student="logits", target="label"),
                     Term("mutual_kl", kl_divergence, teacher="logits", weight=kd.teacher_weight,
                          temperature=kd.temperature, direction="forward"))


# -- arms --------------------------------------------------------------------------------------------
def student_phases(config: BDKDConfig, arm: str) -> list[Phase]:
    """One phase of ``student.epochs`` at a constant AdamW learning rate, every arm alike."""
    s = config.student
    objective = distill_objective(config.offline) if arm == "kd" else student_objective(arm, config.kd)
    return [Phase("online" if is_online(arm) else "train", objective, epochs=s.epochs,
                  optimizer=adamw(s.lr, s.weight_decay))]


def online_teacher(config: BDKDConfig, task: Task) -> Callable[[nn.Module, Path], TrainableTeacher]:
    """The online arms' signal factory: a fresh ``task.teacher()`` co-trained with DML's loss.

    Its initialisation is seeded with ``TEACHER_SEED`` + the run's seed (the seed the study's student builder
    set just before), so every online arm of a seed starts from the same teacher. A teacher given with
    ``weights`` starts from them.
    """
    t = config.teacher

    def signal(pretrained: nn.Module, workdir: Path) -> TrainableTeacher:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TEACHER_SEED + torch.initial_seed())
            model = task.teacher()
        return TrainableTeacher(model, teacher_objective(config.kd), optimizer=adamw(t.lr, t.weight_decay))

    return signal


def _test_confidence(distiller: Distiller, model: nn.Module, test: Dataset) -> dict[str, float]:
    """``confidence_summary`` of ``model`` over ``test``, through the distiller's device and forward."""
    return confidence_summary(*classification_outputs(model, distiller.in_order(test), distiller.forward))


class ScoreCoTeacher(Callback):
    """At the end of an online run, writes the co-trained teacher's metrics and mean confidence on ``test`` to
    ``co_teacher.json``."""

    def __init__(self, test: Dataset) -> None:
        self.test = test

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        """Score the signal's evaluated teacher (main process only writes)."""
        model = distiller.teacher.evaluated().get("teacher") if distiller.teacher is not None else None
        if model is not None:
            metrics = {**distiller.evaluate(self.test, model), **_test_confidence(distiller, model, self.test)}
            if distiller.backend.is_main:
                result.run.write_json("co_teacher.json", metrics)


class ScoreConfidence(Callback):
    """At the end of a run, writes the student's mean confidence against its accuracy on ``test``
    (``confidence_summary``) to ``confidence.json``."""

    def __init__(self, test: Dataset) -> None:
        self.test = test

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        """Score the final student (main process only writes)."""
        summary = _test_confidence(distiller, distiller.student, self.test)
        if distiller.backend.is_main:
            result.run.write_json("confidence.json", summary)


class LogMixWeights(Callback):
    """After every epoch, summarises the weights bᵢ that the phase's ``MixWeightRecorder`` kept over that epoch's
    training steps (``summarize_mix_weights``) and writes every epoch so far to ``mix_weights.json``
    (``{"bins": ..., "epochs": [...]}``). The summaries travel in checkpoints; a run resumed mid-epoch
    summarises that epoch's remaining steps only."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Drain the recorders, summarise, write."""
        recorders = [t.loss for p in distiller.phases for t in p.objective.terms
                     if isinstance(t.loss, MixWeightRecorder)]
        if not recorders:
            return
        weights = torch.cat([r.drain() for r in recorders])
        self.epochs.append({"epoch": len(self.epochs) + 1, **summarize_mix_weights(weights)})
        if distiller.backend.is_main and distiller.run is not None:
            distiller.run.write_json("mix_weights.json", {"bins": HISTOGRAM_BINS, "epochs": self.epochs})

    def state_dict(self) -> dict[str, Any]:
        """The summaries so far (as JSON text)."""
        return {"epochs": json.dumps(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the summaries of a resumed run."""
        self.epochs = json.loads(state["epochs"])


def arm_callbacks(name: str, task: Task) -> Callable[[], list[Callback]]:
    """Fresh callbacks per run: the student's confidence for every arm, the co-trained teacher's score for the
    online arms, the mix-weight log for the BD-KD arms."""

    def build() -> list[Callback]:
        test = task.data.test
        online = [ScoreCoTeacher(test)] if is_online(name) else []
        balanced = [LogMixWeights()] if arm_sharpness(name, 0.0) is not None else []
        return [ScoreConfidence(test), *online, *balanced]

    return build


def describe(name: str, config: BDKDConfig) -> str:
    """One line per arm for the report."""
    kd, off = config.kd, config.offline
    sharpness = arm_sharpness(name, kd.sharpness)
    if sharpness is not None:
        return f"online, entropy-gap-balanced forward/reverse KL, k = {sharpness:g}"
    return {"scratch": "cross-entropy on the train labels alone",
            "kd": f"offline Hinton KD from the pre-trained teacher, T = {off.temperature}, α = {off.alpha}",
            "dml": f"online, student CE + λ_S·τ²·KL(p_T ‖ p_S), λ_S = {kd.student_weight}, τ = {kd.temperature}",
            "fixed-mix-kd": f"online, forward and reverse KL at {1 - kd.reverse_share:g}/{kd.reverse_share:g}"}[name]


def arms(config: BDKDConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists: the method's own (for ``bd-kd``: every BD-KD arm) the variant, offline KD the
    ``kd`` arm."""
    built = {}
    for name in config.arms:
        check_arm(name)
        student_phases(config, name)  # bad objective settings fail here, before anything is trained
        built[name] = Arm(lambda name=name: student_phases(config, name), role=arm_role(name, config.method),
                          signal=online_teacher(config, task) if is_online(name) else None,
                          callbacks=arm_callbacks(name, task), batch_size=config.student.batch_size,
                          description=describe(name, config))
    return built


def compare(config: BDKDConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Offline KD and DML against scratch, then each arm under test against DML (the paper's claim), the fixed
    mix, offline KD and scratch, then the fixed mix against DML."""
    own = [a for a in arms if arms[a].role == "variant"]
    pairs = [("kd", "scratch"), ("dml", "scratch")]
    pairs += [(a, b) for a in own for b in ("dml", "fixed-mix-kd", "kd", "scratch") if b != a]
    pairs.append(("fixed-mix-kd", "dml"))
    return [p for p in dict.fromkeys(pairs) if p[0] in arms and p[1] in arms]


# -- the task ----------------------------------------------------------------------------------------
def noisy_splits(splits: Splits, noise: NoiseConfig, num_classes: int) -> tuple[Splits, int]:
    """``splits`` with noisy labels on the teacher's pool and on ``train`` (its first items, as vision tasks
    build it); val and test clean. Returns the splits and how many train labels were flipped."""
    pool = NoisyLabels(splits.teacher_pool, noise.rate, seed=noise.seed, num_classes=num_classes)
    train = pool if splits.teacher_train is None else Subset(pool, range(len(splits.train)))  # type: ignore[arg-type]
    flipped = int((pool.flipped < len(train)).sum())
    return dataclasses.replace(splits, train=train, teacher_train=pool), flipped


def task(config: BDKDConfig, context: RunContext) -> Task:
    """The vision task of ``data``, ``teacher`` and ``student`` (``mlp-...`` models built here), with noisy train
    labels when ``noise.rate`` > 0."""
    base = vision_task(config.data, config.teacher, config.student, context)
    classes = len(base.class_names or range(10))
    noisy = config.noise.rate > 0
    splits, flipped = noisy_splits(base.data, config.noise, classes) if noisy else (base.data, 0)
    shape = tuple(base.example_input().shape[1:])

    def mlp(spec: TrainConfig, role: str, default: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if not is_mlp_spec(spec.model):
            return default

        def build() -> nn.Module:
            model = build_mlp(spec.model, shape, classes, f"{role}.model")
            return load_weights_into(model, spec.weights, f"{role}.weights") if spec.weights else model

        return build

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return mlp(config.student, "student", lambda: base.student(seed))()

    noise = {"rate": config.noise.rate, "seed": config.noise.seed}
    return dataclasses.replace(base, splits=lambda: splits, teacher=mlp(config.teacher, "teacher", base.teacher),
                               student=student, key={**base.key, "noise": noise},
                               extras={**base.extras, "flipped": flipped},
                               name=f"{base.name}-noisy" if noisy else base.name)


def notes(config: BDKDConfig, task: Task) -> str:
    """The labels, the schedule and the settings behind the numbers."""
    n, s, t, kd = config.noise, config.student, config.teacher, config.kd
    sizes = task.data.sizes()
    pool = sizes.get("teacher_train", sizes["train"])
    labels = (f"Label noise: {100 * n.rate:g} % symmetric on the train split and the teacher's pool, drawn once "
              f"(seed {n.seed}): {task.extras.get('flipped', '?')} train labels flipped; val and test are clean."
              if n.rate > 0 else "Clean labels (no label noise).")
    return (f"{labels} Every arm trains {s.epochs} epochs, AdamW at a constant lr {s.lr}, batch {s.batch_size}. "
            f"Online arms co-train a fresh {t.model} (lr {t.lr}) on the students' {sizes['train']} train samples "
            f"with DML's loss, λ_T = {kd.teacher_weight}, τ = {kd.temperature}; the kd arm distils from the "
            f"{t.model} pre-trained for {t.epochs} epochs on the teacher's pool ({pool} samples, the students' "
            f"being its first {sizes['train']}).")


# -- the report's secondary comparisons ----------------------------------------------------------------
def _per_seed_json(run: Path, results: Mapping[str, Any], filename: str) -> dict[str, dict[str, Any]]:
    """Per arm and seed, the contents of ``<arm>-seed<seed>/<filename>`` where a sub-run wrote one."""
    found: dict[str, dict[str, Any]] = {}
    for name, arm in results["arms"].items():
        for seed in arm["seeds"]:
            path = run / f"{name}-seed{seed}" / filename
            if path.is_file():
                found.setdefault(name, {})[seed] = json.loads(path.read_text())
    return found


def co_teachers(run: Path, results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per online arm and seed, the co-trained teacher's test metrics (from each sub-run's ``co_teacher.json``)."""
    return _per_seed_json(run, results, "co_teacher.json")


def secondary(results: Mapping[str, Any], teachers: Mapping[str, Mapping[str, Mapping[str, float]]]
              ) -> list[PairedComparison]:
    """The study's pairs on student ECE (lower is better), then the online pairs on co-trained teacher accuracy."""
    pairs = [(c["a"], c["b"]) for c in results["comparisons"]]
    co_trained = {"arms": {name: {"seeds": seeds} for name, seeds in teachers.items()}}
    student = [compare_arms(results, a, b, "ece", higher_is_better=False, scale=100, label="student ece")
               for a, b in pairs]
    teacher = [compare_arms(co_trained, a, b, "accuracy", scale=100, label="teacher accuracy")
               for a, b in pairs if a in teachers and b in teachers]
    return [c for c in (*student, *teacher) if c is not None]


def _spread(values: Sequence[float]) -> str:
    """``mean ± sd`` (two decimals; no sd for one value)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    mean, sd = mean_std(list(values))
    return f"{mean:.2f} ± {sd:.2f}"


def confidence_rows(results: Mapping[str, Any], students: Mapping[str, Mapping[str, Mapping[str, float]]],
                    teachers: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict[str, Any]]:
    """Per student arm, then per co-trained teacher: test accuracy, mean confidence and their gap (points, mean ±
    sd over seeds), how many seeds are over-confident, and ECE."""
    rows = []
    for label, table in (("student", students), ("co-trained teacher", teachers)):
        for name, by_seed in table.items():
            seeds = list(by_seed.values())
            gaps = [100 * v["overconfidence"] for v in seeds if "overconfidence" in v]
            eces = ([100 * v["ece"] for v in results["arms"][name]["seeds"].values()] if label == "student"
                    else [100 * v["ece"] for v in seeds])
            rows.append({"model": f"{name} {label}", "accuracy %": _spread([100 * v["accuracy"] for v in seeds]),
                         "mean confidence %": _spread([100 * v["confidence"] for v in seeds if "confidence" in v])
                         if gaps else "n/a",
                         "confidence − accuracy (points)": _spread(gaps) if gaps else "n/a",
                         "over-confident seeds": f"{sum(g > 0 for g in gaps)}/{len(gaps)}",
                         "ECE %": _spread(eces)})
    return rows


# -- the report's mix-weight section -------------------------------------------------------------------
def mix_weight_logs(run: Path, results: Mapping[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per BD-KD arm and seed, the per-epoch summaries of ``mix_weights.json``."""
    return {name: {seed: logged["epochs"] for seed, logged in by_seed.items()}
            for name, by_seed in _per_seed_json(run, results, "mix_weights.json").items()}


def _keys() -> list[str]:
    return ["mean", *(f"q{round(100 * q):02d}" for q in QUANTILES), "above_half"]


def seed_mean_by_epoch(by_seed: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, float]]:
    """Per epoch, the mean over seeds of each summary value (``mean``, the quantiles, ``above_half``); epochs
    every seed logged, with samples."""
    epochs = min(len(v) for v in by_seed.values())
    out = []
    for e in range(epochs):
        logged = [v[e] for v in by_seed.values() if v[e].get("n", 0) > 0]
        if logged:
            out.append({"epoch": e + 1, **{k: sum(x[k] for x in logged) / len(logged) for k in _keys()}})
    return out


def pooled_histogram(by_seed: Mapping[str, Sequence[Mapping[str, Any]]], epoch: int) -> list[int]:
    """The histogram counts of ``epoch`` (1-based; -1: the last) summed over seeds."""
    counts = [0] * HISTOGRAM_BINS
    for logged in by_seed.values():
        summary = logged[epoch - 1] if epoch > 0 else logged[-1]
        for i, c in enumerate(summary.get("histogram", [])):
            counts[i] += c
    return counts


def mix_weight_rows(logs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
                    config: BDKDConfig) -> list[dict[str, Any]]:
    """A table of the seed-mean quantiles of bᵢ at five epochs (first, quarters, last) per BD-KD arm."""
    rows = []
    for name, by_seed in logs.items():
        per_epoch = seed_mean_by_epoch(by_seed)
        if not per_epoch:
            continue
        n = len(per_epoch)
        for index in sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1}):
            e = per_epoch[index]
            rows.append({"arm": name, "k": f"{arm_sharpness(name, config.kd.sharpness):g}", "epoch": e["epoch"],
                         "mean b": f"{e['mean']:.3f}",
                         **{f"q{round(100 * q)}": f"{e[f'q{round(100 * q):02d}']:.3f}" for q in QUANTILES},
                         "share b > 0.5": f"{e['above_half']:.2f}"})
    return rows


def plot_mix_weights(logs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], config: BDKDConfig,
                     path: Path) -> Path:
    """One column per BD-KD arm: the histogram of bᵢ (pooled over seeds) at the first and last epoch, and the
    seed-mean median with its 25–75 % and 5–95 % bands per epoch."""
    import matplotlib.pyplot as plt

    names = list(logs)
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names) + 0.6, 6.4), squeeze=False)
    edges = [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)]
    for column, name in enumerate(names):
        k = arm_sharpness(name, config.kd.sharpness)
        top, bottom = axes[0][column], axes[1][column]
        for epoch, label in ((1, "epoch 1"), (-1, "last epoch")):
            counts = pooled_histogram(logs[name], epoch)
            total = sum(counts) or 1
            top.stairs([c / total for c in counts], edges, label=label, fill=epoch == -1, alpha=0.5 if epoch == -1
                       else 1.0)
        top.set_title(f"{name} (k = {k:g})", fontsize="small")
        top.set_xlabel("reverse-KL weight b")
        if column == 0:
            top.set_ylabel("share of samples")
        top.legend(fontsize="x-small")
        per_epoch = seed_mean_by_epoch(logs[name])
        x = [e["epoch"] for e in per_epoch]
        bottom.fill_between(x, [e["q05"] for e in per_epoch], [e["q95"] for e in per_epoch], alpha=0.2,
                            label="5–95 %")
        bottom.fill_between(x, [e["q25"] for e in per_epoch], [e["q75"] for e in per_epoch], alpha=0.4,
                            label="25–75 %")
        bottom.plot(x, [e["q50"] for e in per_epoch], label="median")
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("epoch")
        if column == 0:
            bottom.set_ylabel("b (seed mean of quantiles)")
        bottom.legend(fontsize="x-small")
    fig.tight_layout()
    return save_figure(fig, path)


def _mix_weight_section(logs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], config: BDKDConfig,
                        run: Path) -> str:
    """The mix weights' table and figure (written to ``plots/mix_weights.png``)."""
    if not logs:
        return "_no BD-KD arm_\n"
    plot = plot_mix_weights(logs, config, run / "plots" / "mix_weights.png")
    return ("bᵢ = σ(k·(H(p_S) − H(p_T))) weighs sample i's reverse KL (1 − bᵢ its forward KL): above 0.5 the "
            "student is less sure than its co-trained teacher and is sharpened, below 0.5 it is surer and is "
            "softened. Quantiles over each epoch's training samples, averaged over seeds (every epoch of every "
            "seed is in `results.json`, `mix_weights`):\n\n" + markdown_table(mix_weight_rows(logs, config))
            + f"\n![Mix weights b per BD-KD arm]({plot.relative_to(run).as_posix()})\n")


def _compact(logs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> dict[str, Any]:
    """The mix-weight logs for ``results.json``: per arm and seed every epoch's summary without its histogram,
    and per arm the histograms of the first and last epoch pooled over seeds."""
    return {name: {"bins": HISTOGRAM_BINS, "first_epoch_histogram": pooled_histogram(by_seed, 1),
                   "last_epoch_histogram": pooled_histogram(by_seed, -1),
                   "seeds": {seed: [{k: v for k, v in e.items() if k != "histogram"} for e in logged]
                             for seed, logged in by_seed.items()}}
            for name, by_seed in logs.items()}


def sections(config: BDKDConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The students' and co-trained teachers' confidence against accuracy, the ECE and teacher comparisons, and
    the distribution of BD-KD's mix weights (also added to ``results``: ``co_teachers``, ``confidence``,
    ``secondary_comparisons``, ``mix_weights``)."""
    teachers = co_teachers(run, results)
    students = _per_seed_json(run, results, "confidence.json")
    logs = mix_weight_logs(run, results)
    extra = secondary(results, teachers)
    results |= {"co_teachers": teachers, "confidence": students,
                "secondary_comparisons": [c.as_dict() for c in extra], "mix_weights": _compact(logs)}
    calibration = (
        "The paper's setting is students that become over-confident (mean confidence above accuracy). Test "
        "accuracy and mean top-class probability per arm (mean ± sd over seeds):\n\n"
        + markdown_table(confidence_rows(results, students, teachers))
        + "\n![Reliability diagrams](plots/reliability.png)\n\nThe paper claims a lower student ECE than DML's and "
          "offline KD's, with a teacher no worse. Paired per-seed differences (same verdict rule):\n\n"
        + "\n".join(f"- {comparison_sentence(c)}" for c in extra) + "\n")
    return [("Calibration and co-trained teachers", calibration),
            ("BD-KD's per-sample mix weights", _mix_weight_section(logs, config, run))]


def _title(config: BDKDConfig, task: Task) -> str:
    noise = f" with {100 * config.noise.rate:g} % label noise" if config.noise.rate > 0 else ""
    return f"{' vs '.join(config.arms)} on {task.description}{noise} (online KD)"


def _method(name: str, summary: str) -> Method:
    return study_method(name, BDKDConfig, task=task, arms=arms, notes=notes, compare=compare, sections=sections,
                        title=_title, teacher_training=lambda c: c.teacher.train_spec(), domain="vision",
                        summary=summary, recipes=Path(__file__).resolve().parent.parent / "recipes")


METHOD = _method("bd-kd", "BD-KD: online KD with entropy-gap-balanced forward/reverse KL (a sweep of its sharpness "
                          "k); vs DML, offline KD, scratch")
DML_METHOD = _method("dml", "Deep Mutual Learning (online KD, forward KL); vs offline KD, scratch")
FIXED_MIX_METHOD = _method("fixed-mix-kd", "Online KD with a fixed forward/reverse KL mix (BD-KD's control)")
