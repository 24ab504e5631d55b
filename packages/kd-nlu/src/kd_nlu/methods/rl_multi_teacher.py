"""Reinforced multi-teacher selection: a policy picks, per text, which teachers the student distils from.

Yuan, Shou, Pei, Lin, Gong, Fu and Jiang, "Reinforced Multi-Teacher Selection for Knowledge Distillation",
AAAI 2021 (arXiv:2012.06048); state and reward as reconstructed in ``kd_core.reinforced``. The teachers are the
study's teacher (MiniLM fine-tuned on the WordNet glosses by default) and smaller BERTs fine-tuned here, with
label noise on one group of classes each (our way of making each teacher unreliable somewhere); they are cached
under ``$KD_DATA_HOME/teachers`` keyed by their spec and the data. The ``rl`` arm's signal is an ``Ensemble``
weighted by ``ReinforcedWeighting``, a Bernoulli policy over state features of each (text, teacher) pair trained
with REINFORCE and a moving-average baseline on the reward ``PolicyReward`` computes after every student step
(by default the drop of the student's loss on a held-out dev subset). The student minimises
(1 − α)·CE + α·τ²·KL(p_ens^τ ‖ p_S^τ), the KD term weighted by ``weighting.sample_weights`` (0 for texts that
selected no teacher).

Arms: ``ce`` (scratch), ``best-single`` (kd: the teacher best on validation), ``uniform`` (equal weights),
``oracle`` (per text, the teachers whose argmax is the gold label; uniform when none is) and ``rl`` (variant).
Every teacher's logits are computed once and served from ``CachedTeacher`` s.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.datacache import cached_model
from kd_core.engine import Phase, adamw, cosine_lr
from kd_core.reinforced import PolicyReward, ReinforcedWeighting, RewardKind
from kd_core.signals import Batch, Ensemble, Signal, TeacherOutput, UniformWeighting
from kd_core.study import Arm, ArmRun, cached_teacher, supervised_phases
from kd_core.study_recipe import StudyRecipe
from kd_core.taps import LOGITS
from kd_core.task import Task, classification_outputs
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from kd_nlu.methods.common import (
    KDSection,
    Strict,
    TrainConfig,
    hinton_objective,
    read_json,
    supervised_objective,
    text_method,
)
from kd_nlu.tasks import TextData, TextModel

ArmName = Literal["ce", "best-single", "uniform", "oracle", "rl"]
ROLES = {"ce": "scratch", "best-single": "kd", "uniform": "baseline", "oracle": "baseline", "rl": "variant"}


class ExtraTeacher(Strict):
    """A smaller BERT teacher fine-tuned here; ``label_noise`` corrupts the labels of class group ``noisy_group``
    (of ``groups`` equal groups of consecutive classes) or of every class when ``noisy_group`` is None."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    layers: Annotated[int, Field(gt=0)] = 2
    hidden: Annotated[int, Field(gt=0)] = 192
    intermediate: Annotated[int, Field(gt=0)] = 768
    train: TrainConfig = TrainConfig(epochs=6, lr=5e-4, batch_size=32)
    label_noise: Annotated[float, Field(ge=0, le=1)] = 0.0
    noisy_group: Annotated[int, Field(ge=0)] | None = None
    groups: Annotated[int, Field(ge=1)] = 3
    seed: int = 0


class PolicySection(Strict):
    """The selector: policy width, learning rate, baseline momentum, entropy bonus, state, warm-up and reward."""

    hidden: Annotated[int, Field(ge=0)] = 32
    lr: Annotated[float, Field(gt=0)] = 1e-3
    baseline_momentum: Annotated[float, Field(ge=0, le=1)] = 0.9
    entropy_bonus: Annotated[float, Field(ge=0)] = 1e-3
    use_label: bool = True
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    reward: RewardKind = "dev_improvement"
    dev_size: Annotated[int, Field(gt=0)] = 128


class RLConfig(StudyRecipe):
    """The ``rl-multi-teacher`` recipe: the study's teacher plus ``extra_teachers``."""

    method: Literal["rl-multi-teacher"] = "rl-multi-teacher"
    data: TextData = TextData(max_length=32)
    teacher: TextModel = TextModel(model="minilm", epochs=3, lr=1e-4)
    extra_teachers: list[ExtraTeacher] = Field(default_factory=lambda: [
        ExtraTeacher(name="bert2-noisy-g0", label_noise=0.6, noisy_group=0),
        ExtraTeacher(name="bert2-noisy-g1", label_noise=0.6, noisy_group=1)])
    student: TextModel = TextModel(model="small", layers=2, hidden=192, intermediate=768, epochs=8, lr=5e-4)
    kd: KDSection = KDSection(temperature=2.0)
    policy: PolicySection = PolicySection()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["ce", "best-single", "uniform", "oracle", "rl"])

    @model_validator(mode="after")
    def _consistent(self) -> RLConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        names = [t.name for t in self.extra_teachers]
        if len(set(names)) != len(names) or "teacher" in names:
            raise ValueError(f"extra_teachers names must be unique and not 'teacher', received {names}")
        for t in self.extra_teachers:
            if t.noisy_group is not None and t.noisy_group >= t.groups:
                raise ValueError(f"extra_teachers[{t.name}].noisy_group must be below groups ({t.groups}), "
                                 f"received {t.noisy_group}")
        return self


def noisy_labels(labels: Sequence[int], num_classes: int, noise: float, group: int | None, groups: int,
                 seed: int) -> list[int]:
    """``labels`` with each one in the noisy group replaced, with probability ``noise``, by another class."""
    rng = random.Random(seed)
    size = -(-num_classes // groups)
    out = []
    for y in labels:
        hit = (group is None or y // size == group) and rng.random() < noise
        out.append(rng.choice([c for c in range(num_classes) if c != y]) if hit else int(y))
    return out


class Relabelled(Dataset):
    """``dataset`` with its items' ``label`` replaced by ``labels``."""

    def __init__(self, dataset: Dataset, labels: Sequence[int]) -> None:
        self.dataset, self.labels = dataset, list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "label": self.labels[index]}


class OracleWeighting:
    """Per text, equal weights on the teachers whose argmax is the gold label (all teachers when none is)."""

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        labels = torch.as_tensor(batch["label"]).reshape(-1, 1).cpu()
        right = torch.stack([o[LOGITS].argmax(-1).cpu() for o in outputs], dim=1).eq(labels).float()
        count = right.sum(1, keepdim=True)
        return torch.where(count > 0, right / count.clamp_min(1), torch.full_like(right, 1 / len(outputs)))

    def update(self, reward: torch.Tensor) -> None:
        """Static: nothing to learn."""


class TeacherPool:
    """Every teacher of one study, built once (the extra ones trained or read from the cache) and scored; their
    validation/test accuracy and per-class training accuracy go to ``<study>/teachers.json``."""

    def __init__(self, config: RLConfig) -> None:
        self.config = config
        self.models: dict[str, nn.Module] = {}
        self.best = ""

    def _extra(self, spec: ExtraTeacher, run: ArmRun) -> tuple[nn.Module, str]:
        from kd_nlu.models.student import build_student, student_config

        task = run.study.task
        train = task.data.train
        labels = noisy_labels([int(train[i]["label"]) for i in range(len(train))], len(task.class_names or []),
                              spec.label_noise, spec.noisy_group, spec.groups, spec.seed)

        def build() -> nn.Module:
            torch.manual_seed(spec.seed)
            return build_student(student_config(run.teacher.config, layers=spec.layers, hidden=spec.hidden,
                                                intermediate=spec.intermediate, num_labels=len(task.class_names or [])))

        def fit(model: nn.Module) -> nn.Module:
            t = spec.train
            phase = Phase("train", supervised_objective(), epochs=t.epochs,
                          optimizer=adamw(t.lr, t.weight_decay), scheduler=cosine_lr, restore_best=True)
            own = dataclasses.replace(run, name=spec.name, student=model, out=run.out.parent / "teachers" / spec.name)
            return own.train([phase], train=Relabelled(train, labels), batch_size=t.batch_size, seed=spec.seed)

        return cached_model(build, fit, f"{task.name}-{spec.name}", self.config.reuse_teacher,
                            spec=spec.model_dump(), data=task.key)

    def get(self, run: ArmRun) -> dict[str, nn.Module]:
        """The teachers by name (``teacher`` first), built on the first call."""
        if self.models:
            return self.models
        study, notes = run.study, {"teacher": "the study's teacher"}
        self.models["teacher"] = run.teacher
        for spec in self.config.extra_teachers:
            model, notes[spec.name] = self._extra(spec, run)
            self.models[spec.name] = model.to(study.backend.device)
        train = [study.backend.to_device(b) for b in DataLoader(study.task.data.train, batch_size=256,
                                                                 collate_fn=study.task.collate)]
        val = [study.backend.to_device(b) for b in DataLoader(study.task.data.val, batch_size=256,
                                                               collate_fn=study.task.collate)]
        report = {}
        for name, model in self.models.items():
            logits, labels = classification_outputs(model, train, study.task.forward)
            right = (logits.argmax(-1) == labels).double()
            classes = len(study.task.class_names or [])
            hits = torch.zeros(classes, dtype=torch.float64).index_add_(0, labels, right)
            seen = torch.zeros(classes, dtype=torch.float64).index_add_(0, labels, torch.ones_like(right))
            report[name] = {"val_accuracy": study.score(model, val)["accuracy"],
                            "test_accuracy": study.score(model, study.test_batches())["accuracy"],
                            "class_accuracy": (hits / seen.clamp_min(1)).tolist(), "source": notes[name]}
        self.best = max(report, key=lambda n: report[n]["val_accuracy"])
        report = {"best_single": self.best, "teachers": report}
        (run.out.parent / "teachers.json").write_text(json.dumps(report, indent=1))
        return self.models

    def signals(self, run: ArmRun) -> dict[str, Signal]:
        """One cached-logits signal per teacher."""
        return {name: cached_teacher(f"outputs-{name}")(model, run.out.parent) for name, model in self.get(run).items()}


def arms(config: RLConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists; the teacher arms share one ``TeacherPool``."""
    train, p, pool = config.student.train_spec(), config.policy, TeacherPool(config)

    def fit(run: ArmRun) -> nn.Module:
        signals = pool.signals(run)
        if run.name == "best-single":
            return run.train(train.phases(hinton_objective(config.kd)), signals[pool.best])
        if run.name != "rl":
            weighting = OracleWeighting() if run.name == "oracle" else UniformWeighting()
            return run.train(train.phases(hinton_objective(config.kd)), Ensemble(list(signals.values()), weighting))
        classes = len(run.study.task.class_names or [])
        policy = ReinforcedWeighting(len(signals), classes, hidden=p.hidden, lr=p.lr, seed=run.seed,
                                     baseline_momentum=p.baseline_momentum, entropy_bonus=p.entropy_bonus,
                                     use_label=p.use_label, warmup_steps=p.warmup_steps)
        val = run.study.task.data.val
        reward = PolicyReward(policy, dev=Subset(val, range(min(p.dev_size, len(val)))) if p.reward != "train_loss"
                              else None, kind=p.reward)
        student = run.train(train.phases(hinton_objective(config.kd, sample_weight=policy.sample_weights)),
                            Ensemble(list(signals.values()), policy), extra_callbacks=[reward])
        (run.out / "selection.json").write_text(json.dumps({
            "teachers": list(signals), "rates": policy.selection_rates().nan_to_num(0.0).tolist(),
            "steps": policy.steps, "rewards": len(policy.history)}))
        return student

    descriptions = {"ce": "cross-entropy alone", "best-single": "Hinton KD from the teacher best on validation",
                    "uniform": "Hinton KD from the mean of every teacher's logits",
                    "oracle": "per text, the teachers that are right (uniform when none is)",
                    "rl": f"per text, the teachers a REINFORCE policy selects (reward {p.reward})"}
    return {name: Arm(lambda: supervised_phases(train), role=ROLES[name], fit=None if name == "ce" else fit,
                      batch_size=train.batch_size, description=descriptions[name]) for name in config.arms}


def compare(config: RLConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Best single teacher against CE, the policy against it, CE and uniform; uniform against the best single;
    the oracle (an upper bound of selection) against the policy."""
    pairs = [("best-single", "ce"), ("rl", "best-single"), ("rl", "ce"), ("rl", "uniform"),
             ("uniform", "best-single"), ("oracle", "rl")]
    return [(a, b) for a, b in pairs if a in arms and b in arms]


def notes(config: RLConfig, task: Task) -> str:
    """The teachers and settings behind the numbers."""
    extra = "; ".join(f"{t.name}: {t.layers}-layer BERT, {t.train.epochs} epochs, label noise {t.label_noise} on "
                      f"{'every class' if t.noisy_group is None else f'class group {t.noisy_group} of {t.groups}'}"
                      for t in config.extra_teachers)
    s, p = config.student, config.policy
    return (f"Teachers: the study's teacher ({config.teacher.model}) and {extra or 'no others'}. KD: τ = "
            f"{config.kd.temperature}, α = {config.kd.alpha}. Student {s.model}: {s.epochs} epochs, AdamW lr {s.lr}. "
            f"Policy: hidden {p.hidden}, lr {p.lr}, warm-up {p.warmup_steps} steps, reward {p.reward} (dev subset "
            f"{p.dev_size}), label in the state: {p.use_label}.")


def _pearson(a: list[float], b: list[float]) -> float | None:
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1]) if x.std() > 0 and y.std() > 0 else None


def teacher_sections(config: RLConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The teachers' own accuracy, and what the policy selected (and whether it tracks the teachers' reliability)."""
    pool = read_json(run / "teachers.json")
    if pool is None:
        return []
    rows = "\n".join(f"| {name} | {100 * t['val_accuracy']:.2f} | {100 * t['test_accuracy']:.2f} | {t['source']} |"
                     for name, t in pool["teachers"].items())
    sections = [("Teachers", "| teacher | val accuracy % | test accuracy % | source |\n|---|---|---|---|\n"
                 f"{rows}\n\nBest single teacher on validation: **{pool['best_single']}**.\n")]
    lines = []
    for seed in results["seeds"]:
        chosen = read_json(run / f"rl-seed{seed}" / "selection.json")
        if chosen is None:
            continue
        rates = [[row[k] for row in chosen["rates"]] for k in range(len(chosen["teachers"]))]
        reliability = [[pool["teachers"][n]["class_accuracy"][c] for c in range(len(chosen["rates"]))]
                       for n in chosen["teachers"]]
        r = _pearson([v for row in rates for v in row], [v for row in reliability for v in row])
        shown = ", ".join(f"{n} {sum(v) / len(v):.2f}" for n, v in zip(chosen["teachers"], rates, strict=True))
        lines.append(f"- seed {seed}: mean selection rate {shown}; Pearson r between per-class selection rate and "
                     f"the teacher's per-class training accuracy: {'n/a' if r is None else f'{r:.3f}'} "
                     f"({chosen['rewards']} policy updates over {chosen['steps']} steps)")
    if lines:
        sections.append(("Policy selection", "\n".join(lines) + "\n\nA policy that learned which teacher to trust "
                         "where selects reliable teachers more often (r > 0).\n"))
    return sections


METHOD = text_method("rl-multi-teacher", RLConfig, arms=arms, compare=compare, notes=notes, extra=teacher_sections,
                     title=lambda c, t: f"Reinforced multi-teacher selection on {t.description}",
                     summary="Reinforced multi-teacher selection: a REINFORCE policy weighs MiniLM and small BERT "
                             "teachers per text; vs best single, uniform, oracle, CE")
