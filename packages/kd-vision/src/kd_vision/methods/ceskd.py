"""CES-KD and its teacher-assistant baseline (TAKD) as arms of one study.

- CES-KD: Amara, Ziaeefard, Meyer, Gross and Clark, "CES-KD: Curriculum-based Expert Selection for
  Guided Knowledge Distillation", arXiv:2209.07606 (ICPR 2022).
- TAKD: Mirzadeh, Farajtabar, Li, Levine, Matsukawa and Ghasemzadeh, "Improved Knowledge Distillation
  via Teacher Assistant", arXiv:1902.03393 (AAAI 2020).

A pool of experts E_1 < ... < E_K (the last one is the study's teacher) learns the teacher's pool with
cross-entropy, each trained once (seed 0) and cached like any teacher. Arms, from the same student
initialisation and data order per seed:

- ``ces-kd``: L = (1 − λ)·CE(y, p_S) + λ·τ²·KL(p_{E_k(x)}^τ ‖ p_S^τ), where the expert k(x) of each sample
  follows a curriculum (``kd_core.curriculum.CurriculumSelection``, the ``Weighting`` of an ``Ensemble``): the
  sample's difficulty quantile u and γ moving from ``gamma_start`` to ``gamma_end`` give k = min(K, 1 + ⌊K·u^γ⌋),
  so easy samples keep small experts and hard ones reach the teacher as training advances. The experts' logits
  on the train split are cached once per study (no augmentation); ``anti-curriculum`` routes by easiness
  instead (a sanity ablation);
- ``takd``: Hinton KD along the chain E_K → E_{K−1} → ... → E_1 → student; the assistants (the experts'
  architectures, each distilled from the one above on the teacher's pool) are trained once and cached;
- ``kd``: Hinton KD from the teacher alone; ``scratch``: cross-entropy alone.

Difficulty (``curriculum.difficulty``), computed once per study:

- ``held-out`` (the default): the train split is dealt into ``curriculum.folds`` folds (a permutation seeded by
  ``curriculum.fold_seed``); a scorer with the teacher's architecture and training, trained on the other folds,
  scores each fold by its cross-entropy, so no sample is scored by a model that trained on it
  (``kd_vision.methods.difficulty``). The scorers are cached like the experts;
- ``teacher``: the study teacher's cross-entropy on each training sample. The students' train split lies inside
  the teacher's pool, so these are in-sample losses, mostly near zero: a weak ranking, kept for comparison.

Both arms with a pool train it first (``Arm.fit``). The report adds the pool's test accuracy and the
curriculum's routing. Besides vision model specs, experts and students accept ``digit-cnn-w<N>``: a
``DigitCNN`` of width N without dropout, so a pool of decreasing width needs no registry entries.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.curriculum import CurriculumSelection, cross_entropy_difficulty
from kd_core.datacache import cached_model
from kd_core.engine import Phase
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from kd_core.objective import Objective
from kd_core.recipes import Method, RunContext
from kd_core.report import markdown_table
from kd_core.schedules import Cosine, Linear, Schedule
from kd_core.signals import CachedTeacher, Ensemble, FrozenTeacher, Signal
from kd_core.study import Arm, ArmRun, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.methods.difficulty import AtPositions, fold_assignment, held_out_difficulty
from kd_vision.methods.hinton import KDConfig, distill_objective
from kd_vision.models import DigitCNN
from kd_vision.tasks import VisionData, build_vision_model, vision_task

ArmName = Literal["ces-kd", "anti-curriculum", "takd", "kd", "scratch"]
ROLES = {"scratch": "scratch", "kd": "kd"}
#: The (a, b) pairs compared on the headline ("a beats b"), in report order, where both arms run.
PAIRS = [("kd", "scratch"), ("ces-kd", "kd"), ("ces-kd", "takd"), ("ces-kd", "anti-curriculum"),
         ("ces-kd", "scratch"), ("takd", "kd"), ("takd", "scratch")]
_WIDTH_NAME = re.compile(r"digit-cnn-w([1-9][0-9]*)")


class CurriculumConfig(Strict):
    """The curriculum exponent γ: from ``gamma_start`` (most samples to small experts) to ``gamma_end``; how each
    training sample's difficulty is measured: ``held-out`` (default; k-fold scorers, ``folds`` and ``fold_seed``)
    or ``teacher`` (the study teacher's in-sample cross-entropy)."""

    gamma_start: Annotated[float, Field(gt=0)] = 4.0
    gamma_end: Annotated[float, Field(gt=0)] = 1.0
    shape: Literal["linear", "cosine"] = "linear"
    tie_seed: int = 0
    difficulty: Literal["held-out", "teacher"] = "held-out"
    folds: Annotated[int, Field(ge=2)] = 5
    fold_seed: int = 0

    def schedule(self) -> Schedule:
        """γ(progress) as a ``kd_core.schedules`` schedule."""
        kind = Linear if self.shape == "linear" else Cosine
        return kind(self.gamma_start, self.gamma_end)


def _default_experts() -> list[TrainConfig]:
    return [TrainConfig(model="digit-cnn-w4", epochs=15, lr=1e-2), TrainConfig(model="digit-cnn-w12", epochs=15,
                                                                                lr=5e-3),
            TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)]


class PoolConfig(StudyRecipe):
    """Fields shared by ``ces-kd`` and ``takd``: data, the expert pool (smallest first, the last one is the
    teacher), the student, Hinton KD's settings (every distilled arm and TAKD's assistants) and the arms."""

    method: str
    data: VisionData = VisionData(teacher_train_size=2500)
    experts: list[TrainConfig] = Field(default_factory=_default_experts)
    student: TrainConfig = TrainConfig(model="digit-cnn-w2", epochs=15, lr=1e-2)
    kd: KDConfig = KDConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)]

    @field_validator("experts")
    @classmethod
    def _assistants_below_the_teacher(cls, value: list[TrainConfig]) -> list[TrainConfig]:
        if len(value) < 2:
            raise ValueError(f"at least one assistant below the teacher (2+ experts, smallest first), received "
                             f"{[e.model for e in value]}")
        return value

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> PoolConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        return self


class CESKDConfig(PoolConfig):
    """The ``ces-kd`` recipe: CES-KD, compared with TAKD, KD from the teacher and scratch by default."""

    method: Literal["ces-kd"] = "ces-kd"
    curriculum: CurriculumConfig = CurriculumConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["ces-kd", "takd", "kd", "scratch"])


class TAKDConfig(PoolConfig):
    """The ``takd`` recipe: the teacher-assistant chain, compared with KD from the teacher and scratch."""

    method: Literal["takd"] = "takd"
    arms: Annotated[list[Literal["takd", "kd", "scratch"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["takd", "kd", "scratch"])


# -- the task ----------------------------------------------------------------------------------------
def task(config: PoolConfig, context: RunContext) -> Task:
    """The vision task of ``data``, the last expert (the teacher) and ``student``; ``extras["build"](spec,
    argument)`` builds any expert spec, ``digit-cnn-w<N>`` included."""
    base = vision_task(config.data, config.experts[-1], config.student, context)
    first = base.data.test[0]["input"]
    in_channels = int(first.shape[0]) if first.ndim == 3 else 1
    classes, trust = len(base.class_names or range(10)), tuple(getattr(context, "trust", ()) or ())

    def build(spec: TrainConfig, argument: str) -> nn.Module:
        match = _WIDTH_NAME.fullmatch(spec.model)
        if match is None:
            return build_vision_model(spec, argument, classes, in_channels, trust)
        model = DigitCNN(width=int(match.group(1)), num_classes=classes, in_channels=in_channels,
                         input_size=max(4, int(first.shape[-1])))
        if spec.weights:
            from kd_core.specs import load_weights_into

            load_weights_into(model, spec.weights, f"{argument}.weights")
        return model

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build(config.student, "student")

    return dataclasses.replace(base, teacher=lambda: build(config.experts[-1], "teacher"), student=student,
                               extras={**base.extras, "build": build})


# -- the pool ----------------------------------------------------------------------------------------
class Pool:
    """The experts below the teacher, TAKD's assistants and the difficulty scorers, trained once per study (seed 0)
    and cached; each training sample's difficulty; what the report shows of them (``pool.json``)."""

    def __init__(self, config: PoolConfig, task: Task) -> None:
        self.config, self.task = config, task
        self.built: dict[str, list[nn.Module]] = {}
        self.difficulty: dict[int, float] | None = None
        self.record: dict[str, Any] = {"experts": [], "assistants": [], "routing": {}}

    def _cached(self, run: ArmRun, spec: TrainConfig, argument: str, folder: str, objective: Objective,
                teacher: nn.Module | None, train_data: Dataset, **determinants: Any) -> tuple[nn.Module, str]:
        """``spec``'s model trained on ``train_data`` through ``objective`` (from ``teacher`` if given) in a folder
        beside the arms, or read from the teacher cache (keyed by the data, the training and ``determinants``)."""
        task = self.task

        def build() -> nn.Module:
            torch.manual_seed(0)
            return task.extras["build"](spec, argument)

        def train(model: nn.Module) -> nn.Module:
            sub = dataclasses.replace(run, name=folder, seed=0, student=model, out=run.out.parent / folder)
            return _fit(sub, spec.train_spec().phases(objective), FrozenTeacher(teacher) if teacher else None,
                        train=train_data, batch_size=spec.batch_size)

        # keyed like a study's teacher: with the same settings, the two share one cache entry
        model, note = cached_model(build, train, task.name, self.config.reuse_teacher,
                                   data={**task.key, "teacher": spec.model}, training=spec.train_spec().__dict__,
                                   **determinants)
        return model.to(run.study.backend.device), note

    def _train(self, run: ArmRun, index: int, folder: str, objective: Objective, teacher: nn.Module | None,
               **determinants: Any) -> nn.Module:
        model, note = self._cached(run, self.config.experts[index], f"experts[{index}].model", folder, objective,
                                   teacher, self.task.data.teacher_pool, **determinants)
        self.record["assistants" if determinants else "experts"].append(
            {"name": folder, "model": self.config.experts[index].model, "params": count_parameters(model),
             "note": note, **run.study.score(model, run.study.test_batches())})
        return model

    def experts(self, run: ArmRun) -> list[nn.Module]:
        """E_1..E_K: the experts below the teacher (cross-entropy), then the study's teacher."""
        if "experts" not in self.built:
            ce = supervised_phases(self.config.experts[0].train_spec())[0].objective
            self.built["experts"] = [self._train(run, i, f"expert{i + 1}", ce, None)
                                     for i in range(len(self.config.experts) - 1)] + [run.teacher]
        return self.built["experts"]

    def assistants(self, run: ArmRun) -> list[nn.Module]:
        """TAKD's chain below the teacher, largest first: each assistant is Hinton KD from the one above."""
        if "assistants" not in self.built:
            chain, above = [], run.teacher
            upstream = [self.config.experts[-1].model_dump()]  # the chain above determines each assistant
            for i in range(len(self.config.experts) - 2, -1, -1):
                above = self._train(run, i, f"assistant{i + 1}", distill_objective(self.config.kd), above,
                                    role="takd-assistant", kd=self.config.kd.model_dump(), upstream=list(upstream))
                chain.append(above)
                upstream.append(self.config.experts[i].model_dump())
            self.built["assistants"] = chain
        return self.built["assistants"]

    def _scores(self, model: nn.Module, run: ArmRun) -> dict[int, float]:
        """``model``'s cross-entropy on every sample of the train split, by position."""
        train = self.task.data.train
        loader = DataLoader(AtPositions(train, range(len(train))), batch_size=256, collate_fn=self.task.collate)
        return cross_entropy_difficulty(model, (run.study.backend.to_device(b) for b in loader), self.task.forward)

    def _held_out(self, run: ArmRun, curriculum: CurriculumConfig) -> dict[int, float]:
        """Held-out difficulty: per fold, a scorer (the teacher's spec) trained on the other folds scores it."""
        train, spec, study = self.task.data.train, self.config.experts[-1], run.study
        folds = fold_assignment(len(train), curriculum.folds, curriculum.fold_seed)
        scorers: list[dict[str, Any]] = []

        def train_scorer(fold: int, positions: list[int]) -> nn.Module:
            ce = supervised_phases(spec.train_spec())[0].objective
            model, note = self._cached(run, spec, "experts[-1].model", f"difficulty-fold{fold + 1}", ce, None,
                                       Subset(train, positions), role="difficulty-scorer", fold=fold,
                                       folds=curriculum.folds, fold_seed=curriculum.fold_seed, train_size=len(train))
            held = DataLoader(AtPositions(train, folds[fold]), batch_size=256, collate_fn=self.task.collate)
            scorers.append({"fold": fold + 1, "trained_on": len(positions), "scored": len(folds[fold]), "note": note,
                            **study.score(model, [study.backend.to_device(b) for b in held])})
            return model

        scores = held_out_difficulty(train, folds, train_scorer, self.task.collate, self.task.forward,
                                     study.backend.to_device)
        self.record["scorers"] = scorers
        return scores

    def difficulty_scores(self, run: ArmRun) -> dict[int, float]:
        """Each training sample's difficulty (``curriculum.difficulty``), computed once; the report's summary of it
        beside the teacher's in-sample cross-entropy."""
        if self.difficulty is None:
            curriculum: CurriculumConfig = self.config.curriculum  # type: ignore[attr-defined]
            in_sample = self._scores(run.teacher, run)
            self.difficulty = in_sample if curriculum.difficulty == "teacher" else self._held_out(run, curriculum)
            self.record["difficulty"] = difficulty_summary(curriculum, self.difficulty, in_sample)
        return self.difficulty

    def selection(self, run: ArmRun, reverse: bool) -> CurriculumSelection:
        """The curriculum over the train split by difficulty (``reverse``: anti-curriculum)."""
        difficulty = self.difficulty_scores(run)
        curriculum: CurriculumConfig = self.config.curriculum  # type: ignore[attr-defined]
        selection = CurriculumSelection(difficulty, len(self.config.experts), curriculum.schedule(),
                                        reverse=reverse, seed=curriculum.tie_seed)
        self.record["routing"][run.name] = routing_summary(selection, difficulty)
        return selection

    def save(self, run: ArmRun) -> None:
        """Write what the report shows of the pool to the study's ``pool.json`` (main process only)."""
        if run.study.backend.is_main:
            (run.out.parent / "pool.json").write_text(json.dumps(self.record, indent=1, default=float))


def _spearman(a: dict[int, float], b: dict[int, float]) -> float:
    """Spearman's rank correlation of two scores over the same ids (ties by average rank)."""
    from scipy.stats import spearmanr

    ids = sorted(a)
    return float(spearmanr([a[i] for i in ids], [b[i] for i in ids]).statistic)


def difficulty_summary(curriculum: CurriculumConfig, scores: dict[int, float],
                       in_sample: dict[int, float]) -> dict[str, Any]:
    """The difficulty measure and, for it and the teacher's in-sample cross-entropy: the median score and the share
    of samples scored below 0.01 (near-ties); their rank correlation."""
    def stats(values: dict[int, float]) -> dict[str, float]:
        v = torch.tensor(list(values.values()), dtype=torch.float64)
        return {"median": float(v.median()), "below_0.01": float((v < 0.01).double().mean())}

    held_out = curriculum.difficulty == "held-out"
    return {"measure": curriculum.difficulty, "folds": curriculum.folds if held_out else None,
            "scores": stats(scores), "teacher_in_sample": stats(in_sample),
            "rank_correlation_with_teacher_in_sample": _spearman(scores, in_sample)}


def _fit(run: ArmRun, phases: list[Phase], signal: Signal | None, train: Any = None, **options: Any) -> nn.Module:
    """Train ``run.student`` through ``phases`` from ``signal`` on ``train`` (default: the task's train split)."""
    data = run.study.task.data
    distiller = run.distiller(phases, signal, **options)
    distiller.fit(data.train if train is None else train, data.val, out=run.out, config=run.config(),
                  resume=run.resume and (run.out / "config.yaml").is_file())
    return distiller.student


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


# -- arms --------------------------------------------------------------------------------------------
def check_pool(config: PoolConfig, task: Task) -> None:
    """Refuse, before training, a pool whose experts do not grow from smallest to largest (parameter counts)."""
    sizes = [count_parameters(task.extras["build"](e, f"experts[{i}].model")) for i, e in enumerate(config.experts)]
    if sizes != sorted(sizes):
        raise ConfigError("experts", "experts ordered from smallest to largest (parameter counts)",
                          dict(zip([e.model for e in config.experts], sizes, strict=True)))


def check_folds(config: PoolConfig, task: Task) -> None:
    """Refuse, before training, more held-out difficulty folds than the train split has samples."""
    curriculum = getattr(config, "curriculum", None)
    if curriculum is not None and curriculum.difficulty == "held-out":
        fold_assignment(len(task.data.train), curriculum.folds)  # raises ConfigError naming curriculum.folds


def arms(config: PoolConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists; the pool's arms train it first (``Arm.fit``)."""
    if task is not None:
        check_pool(config, task)
        check_folds(config, task)
    train, pool = config.student.train_spec(), Pool(config, task)

    def takd(run: ArmRun) -> nn.Module:
        teacher = FrozenTeacher(pool.assistants(run)[-1])
        pool.save(run)
        return _fit(run, train.phases(distill_objective(config.kd)), teacher)

    def curriculum(run: ArmRun) -> nn.Module:
        experts, selection = pool.experts(run), pool.selection(run, reverse=run.name == "anti-curriculum")
        caches = [CachedTeacher(FrozenTeacher(e), run.out.parent / "expert-logits" / f"expert{i + 1}")
                  for i, e in enumerate(experts)]
        pool.save(run)
        return _fit(run, train.phases(distill_objective(config.kd)), Ensemble(caches, selection))

    kd = f"T = {config.kd.temperature}, α = {config.kd.alpha}"
    descriptions = {"scratch": "cross-entropy alone", "kd": f"Hinton KD from the teacher, {kd}",
                    "takd": f"Hinton KD along the assistant chain, {kd}",
                    "ces-kd": f"Hinton KD from one expert per sample (curriculum), {kd}",
                    "anti-curriculum": "ces-kd with hard samples to small experts"}
    built = {}
    for name in config.arms:
        phases = (lambda: supervised_phases(train)) if name == "scratch" else \
            (lambda: train.phases(distill_objective(config.kd)))
        built[name] = Arm(phases, role=ROLES.get(name, "variant" if name == config.method else "baseline"),
                          fit=takd if name == "takd" else curriculum if name in ("ces-kd", "anti-curriculum")
                          else None, batch_size=train.batch_size, description=descriptions[name])
    return built


def compare(config: PoolConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """KD against scratch, then the papers' claims: CES-KD ≥ TAKD, CES-KD > KD, anti-curriculum < CES-KD, TAKD > KD."""
    return [(a, b) for a, b in PAIRS if a in arms and b in arms]


def notes(config: PoolConfig, task: Task) -> str:
    """The pool, KD and curriculum settings behind the numbers."""
    s, kd = config.student, config.kd
    pool = ", ".join(f"{e.model} ({e.epochs} epochs, lr {e.lr})" for e in config.experts)
    text = (f"Expert pool, smallest first (the last is the teacher), trained with cross-entropy on the teacher's "
            f"pool: {pool}. KD: L = (1 − α)·CE + α·T²·KL, T = {kd.temperature}, α = {kd.alpha}. Student {s.model}: "
            f"{s.epochs} epochs, AdamW lr {s.lr}, cosine decay, batch {s.batch_size}.")
    curriculum = getattr(config, "curriculum", None)
    if curriculum is not None:
        measure = (f"the cross-entropy of a {config.experts[-1].model} scorer trained on the other "
                   f"{curriculum.folds - 1} of {curriculum.folds} folds of the train split (held out: no sample is "
                   f"scored by a model that trained on it)" if curriculum.difficulty == "held-out"
                   else "the teacher's cross-entropy on each training sample (in-sample)")
        text += (f" Curriculum: γ {curriculum.shape} from {curriculum.gamma_start} to {curriculum.gamma_end}; "
                 f"difficulty = {measure}.")
    return text


def sections(config: PoolConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The pool's test accuracy and the curriculum's routing (also added to ``results``: ``pool``, ``routing``)."""
    if not (run / "pool.json").is_file():
        return []
    pool = json.loads((run / "pool.json").read_text())
    results |= {"pool": {k: pool[k] for k in ("experts", "assistants")}, "routing": pool["routing"]}
    rows = [{"model": r["name"], "architecture": r["model"], "params": r["params"],
             "accuracy %": f"{100 * r['accuracy']:.2f}", "origin": r["note"]}
            for r in pool["experts"] + pool["assistants"]]
    routing = [{"arm": arm, "progress": p, **{f"E{k + 1}": f"{100 * x:.0f}%" for k, x in enumerate(r["shares"])},
                "easiest 25 %: mean expert": f"{r['easiest_quarter_mean_expert']:.2f}",
                "hardest 25 %: mean expert": f"{r['hardest_quarter_mean_expert']:.2f}"}
               for arm, by_p in pool["routing"].items() for p, r in by_p.items()]
    found = [("Experts and assistants (test split)", "The teacher is in the summary above.\n\n" + markdown_table(rows))]
    if "difficulty" in pool:
        results["difficulty"] = {k: pool[k] for k in ("difficulty", "scorers") if k in pool}
        found.append(("Difficulty scores", difficulty_section(pool)))
    if routing:
        found.append(("Curriculum routing (share of training samples per expert)", markdown_table(routing)))
    return found


def difficulty_section(pool: dict[str, Any]) -> str:
    """The difficulty measure against the teacher's in-sample cross-entropy, and each held-out scorer's fold."""
    summary = pool["difficulty"]
    measures = [("curriculum's difficulty" + (f" ({summary['measure']}, {summary['folds']} folds)"
                                            if summary["folds"] else f" ({summary['measure']})"), summary["scores"]),
                ("teacher's in-sample cross-entropy", summary["teacher_in_sample"])]
    rows = [{"score": name, "median": f"{s['median']:.4f}", "share below 0.01": f"{100 * s['below_0.01']:.0f}%"}
            for name, s in measures]
    text = (markdown_table(rows).rstrip() + "\n\nSpearman rank correlation between the two: "
            f"{summary['rank_correlation_with_teacher_in_sample']:.2f}.")
    scorers = [{"fold": r["fold"], "trained on": r["trained_on"], "scored": r["scored"],
                "accuracy on its held-out fold %": f"{100 * r['accuracy']:.2f}",
                "origin": "trained in this run" if r["note"].startswith("trained") else "teacher cache"}
               for r in pool.get("scorers", [])]
    return text + ("\n\n" + markdown_table(scorers) if scorers else "")


def _method(name: str, config_model: type[PoolConfig], title: str, summary: str) -> Method:
    return study_method(name, config_model, task=task, arms=arms, notes=notes, compare=compare, sections=sections,
                        title=lambda c, t: f"{title} on {t.description}",
                        teacher_training=lambda c: c.experts[-1].train_spec(), domain="vision", summary=summary,
                        recipes=Path(__file__).resolve().parent.parent / "recipes")


METHOD = _method("ces-kd", CESKDConfig, "CES-KD vs TAKD vs KD vs scratch",
                 "CES-KD: per-sample curriculum over a pool of CNN experts vs TAKD, KD and scratch")
TAKD_METHOD = _method("takd", TAKDConfig, "TAKD vs KD vs scratch",
                      "TAKD: teacher -> assistants -> student chain of Hinton KD, vs KD and scratch")

