"""BD-KD: online distillation that balances forward and reverse KL per sample, with DML and a fixed mix.

Amara, Sepahvand, Meyer, Gross and Clark, "BD-KD: Balancing the Divergences for Online Knowledge
Distillation", arXiv:2212.12965 (v1, 2022). Teacher and student are trained together from scratch. The
paper fixes the structure; the sigmoid weights and their sharpness k are our reading of its entropy-gap rule:

- student: CE(y, p_S) + λ_S·τ²·(1/B)·Σᵢ [aᵢ·KL(p_Tⁱ ‖ p_Sⁱ) + bᵢ·KL(p_Sⁱ ‖ p_Tⁱ)], with the detached entropy
  gap Δᵢ = H(p_Sⁱ) − H(p_Tⁱ), bᵢ = σ(k·Δᵢ), aᵢ = 1 − bᵢ (``kd_core.losses.balanced_kl``);
- teacher (v1's loss; v2 of the paper also changes it): DML's CE(y, p_T) + λ_T·τ²·KL(p_S ‖ p_T) against the
  detached student.

Arms, from the same student initialisation and data order per seed: ``bd-kd``; ``dml`` (Zhang et al., "Deep
Mutual Learning", arXiv:1706.00384: forward KL alone); ``fixed-mix-kd`` (forward and reverse KL at a fixed
share); ``kd``, offline Hinton KD from the study's pre-trained teacher; ``scratch``, CE alone. Each online arm
co-trains a fresh teacher network (a ``TrainableTeacher`` built per run by the arm's signal factory, seeded
from the run's seed) and scores it on the test split at the end (``co_teacher.json``). Train labels (and the
pre-trained teacher's pool) carry symmetric noise drawn once per study (``kd_vision.data.noise``); val and
test are clean. The paper claims a better-calibrated (lower ECE) and at least as accurate student than DML,
with a teacher no worse: the report compares the arms on accuracy, then on student ECE and on the co-trained
teachers' accuracy. Models: any vision spec, or ``mlp-<w1>-<w2>...`` (the experiment's MLPs).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Objective, Phase, Term, adamw
from kd_core.engine import Callback, Distiller, FitResult
from kd_core.errors import ConfigError
from kd_core.losses import balanced_kl, cross_entropy, kl_divergence
from kd_core.recipes import Method, RunContext
from kd_core.report import markdown_table
from kd_core.signals import TrainableTeacher
from kd_core.specs import load_weights_into
from kd_core.stats import PairedComparison, paired_difference
from kd_core.study import Arm
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.study_report import comparison_sentence
from kd_core.task import Splits, Task
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset, Subset

from kd_vision.data.noise import NoisyLabels
from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.tasks import VisionData, vision_task

ArmName = Literal["scratch", "kd", "dml", "fixed-mix-kd", "bd-kd"]
ONLINE = ("dml", "fixed-mix-kd", "bd-kd")
ROLES = {"scratch": "scratch", "kd": "kd"}
_MLP = re.compile(r"mlp-([1-9]\d*(?:-[1-9]\d*)*)")
#: The co-trained teacher of seed s starts from seed TEACHER_SEED + s.
TEACHER_SEED = 10_000


def build_net(name: str, input_shape: Sequence[int], num_classes: int = 10) -> nn.Module:
    """``mlp-512-512``: Flatten, Linear(in, 512), ReLU, Linear(512, 512), ReLU, Linear(512, C)."""
    match = _MLP.fullmatch(name)
    if match is None:
        raise ConfigError("model", "'mlp-<hidden widths>' (e.g. 'mlp-512-512')", name)
    widths = [math.prod(input_shape), *(int(w) for w in match.group(1).split("-"))]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))


# -- config ------------------------------------------------------------------------------------------
class NoiseConfig(Strict):
    """Symmetric label noise on the train split (and the teacher's pool): the rate and the draw's seed."""

    rate: Annotated[float, Field(ge=0, lt=1)] = 0.2
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
    """

    method: Literal["bd-kd", "dml", "fixed-mix-kd"] = "bd-kd"
    data: VisionData = VisionData(source="sklearn8x8", train_size=1000, val_size=200, test_size=597)
    noise: NoiseConfig = NoiseConfig()
    teacher: TrainConfig = TrainConfig(model="mlp-512-512", epochs=80, lr=1e-3)
    student: TrainConfig = TrainConfig(model="mlp-12", epochs=80, lr=1e-3)
    kd: OnlineKDConfig = OnlineKDConfig()
    offline: KDConfig = KDConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["scratch", "kd", "dml", "bd-kd"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2, 3, 4])

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> BDKDConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        return self


# -- objectives --------------------------------------------------------------------------------------
def check_sharpness(sharpness: Any) -> float:
    """Return BD-KD's sharpness k as a float, or raise ``ConfigError`` unless it is a finite number ≥ 0."""
    if isinstance(sharpness, bool) or not isinstance(sharpness, int | float) or not math.isfinite(sharpness) \
            or sharpness < 0:
        raise ConfigError("sharpness", "a finite number >= 0 (k in b = sigmoid(k * entropy gap))", sharpness)
    return float(sharpness)


def student_objective(arm: str, kd: OnlineKDConfig) -> Objective:
    """The student's loss: CE, plus λ_S·τ²·(forward KL | fixed mix | balanced KL) for the online arms."""
    check_sharpness(kd.sharpness)
    ce = Term("ce", cross_entropy, student="logits", target="label")
    tau, weight, share = kd.temperature, kd.student_weight, kd.reverse_share
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
    if arm == "bd-kd":
        return Objective(ce, Term("kd_balanced", balanced_kl, teacher="logits", weight=weight, temperature=tau,
                                  sharpness=kd.sharpness))
    raise ConfigError("arm", f"one of {['scratch', *ONLINE]}", arm)


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
    return [Phase("online" if arm in ONLINE else "train", objective, epochs=s.epochs,
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


class ScoreCoTeacher(Callback):
    """At the end of an online run, writes the co-trained teacher's metrics on ``test`` to ``co_teacher.json``."""

    def __init__(self, test: Dataset) -> None:
        self.test = test

    def on_fit_end(self, distiller: Distiller, result: FitResult) -> None:
        """Score the signal's evaluated teacher (main process only writes)."""
        model = distiller.teacher.evaluated().get("teacher") if distiller.teacher is not None else None
        if model is not None:
            metrics = distiller.evaluate(self.test, model)
            if distiller.backend.is_main:
                result.run.write_json("co_teacher.json", metrics)


def arms(config: BDKDConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists: the method's own is the variant, offline KD the ``kd`` arm."""
    kd, off = config.kd, config.offline
    descriptions = {
        "scratch": "cross-entropy on the (noisy) labels alone",
        "kd": f"offline Hinton KD from the pre-trained teacher, T = {off.temperature}, α = {off.alpha}",
        "dml": f"online, student CE + λ_S·τ²·KL(p_T ‖ p_S), λ_S = {kd.student_weight}, τ = {kd.temperature}",
        "fixed-mix-kd": f"online, forward and reverse KL at {1 - kd.reverse_share:g}/{kd.reverse_share:g}",
        "bd-kd": f"online, entropy-gap-balanced forward/reverse KL, k = {kd.sharpness}"}
    built = {}
    for name in config.arms:
        student_phases(config, name)  # bad objective settings fail here, before anything is trained
        online = name in ONLINE
        built[name] = Arm(lambda name=name: student_phases(config, name),
                          role=ROLES.get(name, "variant" if name == config.method else "baseline"),
                          signal=online_teacher(config, task) if online else None,
                          callbacks=(lambda: [ScoreCoTeacher(task.data.test)]) if online else list,
                          batch_size=config.student.batch_size, description=descriptions[name])
    return built


def compare(config: BDKDConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Offline KD against scratch, then the method against DML (the paper's claim), the fixed mix, KD, scratch."""
    own = [(config.method, b) for b in ("dml", "fixed-mix-kd", "kd", "scratch") if b != config.method]
    pairs = [("kd", "scratch"), *own, ("fixed-mix-kd", "dml")]
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
    """The vision task of ``data``, ``teacher`` and ``student``, with noisy train labels; ``mlp-...`` models."""
    base = vision_task(config.data, config.teacher, config.student, context)
    splits, flipped = noisy_splits(base.data, config.noise, len(base.class_names or range(10)))
    shape, classes = tuple(base.example_input().shape[1:]), len(base.class_names or range(10))

    def mlp(spec: TrainConfig, role: str, default: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if _MLP.fullmatch(spec.model) is None:
            return default

        def build() -> nn.Module:
            model = build_net(spec.model, shape, classes)
            return load_weights_into(model, spec.weights, f"{role}.weights") if spec.weights else model

        return build

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return mlp(config.student, "student", lambda: base.student(seed))()

    noise = {"rate": config.noise.rate, "seed": config.noise.seed}
    return dataclasses.replace(base, splits=lambda: splits, teacher=mlp(config.teacher, "teacher", base.teacher),
                               student=student, key={**base.key, "noise": noise},
                               extras={**base.extras, "flipped": flipped}, name=f"{base.name}-noisy")


def notes(config: BDKDConfig, task: Task) -> str:
    """The noise, the schedule and the settings behind the numbers."""
    n, s, t, kd = config.noise, config.student, config.teacher, config.kd
    return (f"Label noise: {100 * n.rate:g} % symmetric on the train split and the teacher's pool, drawn once "
            f"(seed {n.seed}): {task.extras.get('flipped', '?')} train labels flipped; val and test are clean. "
            f"Every arm trains {s.epochs} epochs, AdamW at a constant lr {s.lr}, batch {s.batch_size}. Online arms "
            f"co-train a fresh {t.model} (lr {t.lr}) with DML's loss, λ_T = {kd.teacher_weight}, τ = "
            f"{kd.temperature}; the kd arm distils from the {t.model} pre-trained for {t.epochs} epochs on the "
            f"noisy pool. The reliability diagrams show whether the students are under- or over-confident: "
            f"under label noise they are under-confident, the opposite of the paper's setting, and anything that "
            f"sharpens them lowers their ECE.")


# -- the report's secondary comparisons ----------------------------------------------------------------
def co_teachers(run: Path, results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per online arm and seed, the co-trained teacher's test metrics (from each sub-run's ``co_teacher.json``)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for name, arm in results["arms"].items():
        for seed in arm["seeds"]:
            path = run / f"{name}-seed{seed}" / "co_teacher.json"
            if path.is_file():
                found.setdefault(name, {})[seed] = json.loads(path.read_text())
    return found


def secondary(results: Mapping[str, Any], teachers: Mapping[str, Mapping[str, Mapping[str, float]]]
              ) -> list[PairedComparison]:
    """The study's pairs on student ECE (lower is better), then the online pairs on co-trained teacher accuracy."""
    pairs = [(c["a"], c["b"]) for c in results["comparisons"]]
    out = []
    for (a, b), (metric, source, higher) in itertools.product(
            pairs, [("ece", "student", False), ("accuracy", "teacher", True)]):
        table = {x: results["arms"][x]["seeds"] for x in (a, b)} if source == "student" else teachers
        if a not in table or b not in table:
            continue
        seeds = [s for s in table[a] if s in table[b]]
        out.append(paired_difference([100 * table[a][s][metric] for s in seeds],
                                     [100 * table[b][s][metric] for s in seeds], a_name=a, b_name=b,
                                     metric=f"{source} {metric}", higher_is_better=higher))
    return sorted(out, key=lambda c: c.metric != "student ece")


def _mean(by_seed: Mapping[str, Mapping[str, float]], metric: str) -> str:
    return f"{100 * sum(v[metric] for v in by_seed.values()) / len(by_seed):.2f}"


def sections(config: BDKDConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The co-trained teachers' test metrics and the ECE and teacher comparisons (also added to ``results``:
    ``co_teachers``, ``secondary_comparisons``)."""
    teachers = co_teachers(run, results)
    extra = secondary(results, teachers)
    results |= {"co_teachers": teachers, "secondary_comparisons": [c.as_dict() for c in extra]}
    rows = [{"arm": name, "co-trained teacher accuracy %": _mean(by, "accuracy"), "ECE %": _mean(by, "ece"),
             "seeds": len(by)} for name, by in teachers.items()]
    return [("Calibration and co-trained teachers",
             "The paper claims a lower student ECE than DML's at no accuracy cost, with a teacher no worse. Paired "
             "per-seed differences (same verdict rule):\n\n" + "\n".join(f"- {comparison_sentence(c)}" for c in extra)
             + "\n\nCo-trained teachers on the test split (mean over seeds):\n\n"
             + (markdown_table(rows) if rows else "_no online arm_\n"))]


def _method(name: str, summary: str) -> Method:
    return study_method(name, BDKDConfig, task=task, arms=arms, notes=notes, compare=compare, sections=sections,
                        title=lambda c, t: f"{' vs '.join(c.arms)} on {t.description} with "
                                           f"{100 * c.noise.rate:g} % label noise (online KD)",
                        teacher_training=lambda c: c.teacher.train_spec(), domain="vision", summary=summary,
                        recipes=Path(__file__).resolve().parent.parent / "recipes")


METHOD = _method("bd-kd", "BD-KD: online KD with entropy-gap-balanced forward/reverse KL on noisy labels; vs DML, "
                          "offline KD, scratch")
DML_METHOD = _method("dml", "Deep Mutual Learning (online KD, forward KL) on noisy labels; vs offline KD, scratch")
FIXED_MIX_METHOD = _method("fixed-mix-kd", "Online KD with a fixed forward/reverse KL mix (BD-KD's control) on "
                                           "noisy labels")
