"""Reinforced multi-teacher selection on the WordNet gloss task: a policy picks, per text, which teachers to trust.

Yuan, Shou, Pei, Lin, Gong, Fu and Jiang, "Reinforced Multi-Teacher Selection for Knowledge Distillation",
AAAI 2021 (arXiv:2012.06048); state and reward as reconstructed in ``kd_core.reinforced``. The teachers are the
fine-tuned MiniLM and smaller BERTs fine-tuned here (optionally with label noise on one group of classes each, our
way of making each teacher unreliable somewhere). ``kd_core.reinforced.ReinforcedWeighting`` is the ``Ensemble``'s
weighting: a Bernoulli policy over state features of each (text, teacher) pair, trained with REINFORCE and a
moving-average baseline on a reward that ``PolicyReward`` computes after every student step (by default the
drop of the student's loss on a held-out dev subset). The student minimises
(1 − α)·CE + α·τ²·KL(p_ens^τ ‖ p_S^τ), the KD term dropped for texts that selected no teacher.

Arms: ``ce`` (no teacher), ``best-single`` (the teacher best on validation), ``uniform`` (equal weights),
``rl`` (the policy) and ``oracle`` (per text, the teachers whose argmax is the gold label; uniform when none
is). Teacher logits are computed once per teacher and served from ``CachedTeacher`` s.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import format_mean_std
from kd_core.objective import Objective, Term
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.reinforced import PolicyReward, ReinforcedWeighting, RewardKind
from kd_core.report import markdown_table
from kd_core.runs import RunDir
from kd_core.signals import Batch, Ensemble, Signal, TeacherOutput, UniformWeighting
from kd_core.taps import LOGITS
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset, Subset

from kd_nlu.data.text import TextDataset
from kd_nlu.methods.common import (
    KDSection,
    Strict,
    StudentSpec,
    TextResources,
    TrainConfig,
    arm_report,
    arm_rows,
    cached_model,
    cached_signal,
    classifier_metrics,
    digest,
    evaluate_arms,
    fit_text,
    fit_with_callbacks,
    gloss_resources,
    mean_accuracy,
    open_run,
    predict_logits,
    score_arms,
    single_phase,
    supervised_objective,
)
from kd_nlu.models.teacher import GlossTeacherConfig

RLArm = Literal["ce", "best-single", "uniform", "rl", "oracle"]
LABELS = {"ce": "CE only", "best-single": "best single teacher", "uniform": "uniform teachers",
          "rl": "RL selection", "oracle": "oracle selection"}


class ExtraTeacher(Strict):
    """A smaller BERT teacher fine-tuned here; ``label_noise`` corrupts the labels of class group ``noisy_group``
    (of ``groups`` equal groups of consecutive classes) or of every class when ``noisy_group`` is None."""

    name: Annotated[str, Field(min_length=1)]
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




class RLConfig(RecipeConfig):
    """The ``rl-multi-teacher`` recipe. ``teacher`` is N1's MiniLM ``GlossTeacherConfig`` (also the data)."""

    method: Literal["rl-multi-teacher"] = "rl-multi-teacher"
    teacher: GlossTeacherConfig = GlossTeacherConfig()
    extra_teachers: list[ExtraTeacher] = Field(default_factory=lambda: [
        ExtraTeacher(name="bert2-noisy-g0", label_noise=0.6, noisy_group=0),
        ExtraTeacher(name="bert2-noisy-g1", label_noise=0.6, noisy_group=1)])
    student: StudentSpec = StudentSpec()
    kd: KDSection = KDSection(temperature=2.0)
    policy: PolicySection = PolicySection()
    arms: Annotated[list[RLArm], Field(min_length=1)] = Field(
        default_factory=lambda: ["ce", "best-single", "uniform", "rl", "oracle"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RLConfig:
        if len(set(self.arms)) != len(self.arms) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"arms and seeds must not repeat, received {self.arms} and {self.seeds}")
        names = [t.name for t in self.extra_teachers]
        if len(set(names)) != len(names) or "minilm" in names:
            raise ValueError(f"extra_teachers names must be unique and not 'minilm', received {names}")
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


class OracleWeighting:
    """Per text, equal weights on the teachers whose argmax is the gold label (all teachers when none is)."""

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        labels = torch.as_tensor(batch["label"]).reshape(-1, 1).cpu()
        right = torch.stack([o[LOGITS].argmax(-1).cpu() for o in outputs], dim=1).eq(labels).float()
        count = right.sum(1, keepdim=True)
        return torch.where(count > 0, right / count.clamp_min(1), torch.full_like(right, 1 / len(outputs)))

    def update(self, reward: torch.Tensor) -> None:
        """Static: nothing to learn."""


class RLPlan:
    """Teachers once; every arm for every seed; test metrics, selection rates and a report."""

    def __init__(self, config: RLConfig, resources: TextResources | None = None) -> None:
        self.config = config
        self.resources = resources
        self.policies: dict[int, ReinforcedWeighting] = {}

    def _extra_teacher(self, spec: ExtraTeacher, res: TextResources, backend: Backend, progress: Any,
                       out: Path) -> tuple[nn.Module, str]:
        from kd_nlu.models.student import build_student, student_config

        base = next(iter(res.teachers.values()))
        train = res.splits["train"]
        assert isinstance(train, TextDataset)
        labels = noisy_labels(train.labels or [], res.num_classes, spec.label_noise, spec.noisy_group, spec.groups,
                              spec.seed)
        noisy = TextDataset(train.texts, labels, train.tokenizer, max_length=train.max_length)

        def build() -> nn.Module:
            torch.manual_seed(spec.seed)
            return build_student(student_config(base.config, layers=spec.layers, hidden=spec.hidden,
                                                intermediate=spec.intermediate, num_labels=res.num_classes))

        def fit(model: nn.Module) -> nn.Module:
            return fit_text(model, single_phase(supervised_objective(), spec.train, restore_best=True), noisy,
                            res.splits.get("val"), out / spec.name, backend, seed=spec.seed,
                            batch_size=spec.train.batch_size, config={"teacher": spec.model_dump()},
                            label=spec.name, progress=progress, pad_token_id=res.pad_token_id)

        return cached_model(build, fit, f"gloss-{spec.name}", self.config.reuse_teacher, spec=spec.model_dump(),
                            data=digest(texts=train.texts, labels=train.labels))

    def _teachers(self, backend: Backend, progress: Any, top: Path) -> TextResources:
        c = self.config
        if self.resources is None:
            self.resources = gloss_resources(c.teacher, c.student, backend, progress, top / "teacher",
                                             c.reuse_teacher)
        res = self.resources
        for spec in c.extra_teachers:
            if spec.name not in res.teachers:
                res.teachers[spec.name], res.notes[spec.name] = self._extra_teacher(spec, res, backend, progress,
                                                                                    top / "teachers")
        return res

    def _signal(self, arm: str, signals: dict[str, Signal],
                best: str) -> tuple[Signal | None, ReinforcedWeighting | None]:
        c, names = self.config, list(signals)
        if arm == "ce":
            return None, None
        if arm == "best-single":
            return signals[best], None
        if arm == "uniform":
            return Ensemble([signals[n] for n in names], UniformWeighting()), None
        if arm == "oracle":
            return Ensemble([signals[n] for n in names], OracleWeighting()), None
        p = c.policy
        weighting = ReinforcedWeighting(len(names), self.resources.num_classes, hidden=p.hidden, lr=p.lr,
                                        baseline_momentum=p.baseline_momentum, entropy_bonus=p.entropy_bonus,
                                        use_label=p.use_label, warmup_steps=p.warmup_steps)
        return Ensemble([signals[n] for n in names], weighting), weighting

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of every arm's final student in a finished run (``kd-nlu eval RUN``)."""
        return evaluate_arms(run, self.config, self.resources, device)

    def run(self, context: RunContext) -> Path:
        """Train the teachers (or reuse them), every arm for every seed, evaluate and report."""
        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seeds[0], backend)
        students: dict[str, dict[int, nn.Module]] = {arm: {} for arm in c.arms}
        selection: dict[str, list[list[float]]] = {}
        with progress_bar() as progress:
            res = self._teachers(backend, progress, top.path)
            val = res.splits.get("val") or res.splits["train"]
            teacher_val = {n: classifier_metrics(m, val, backend, res.pad_token_id)[0]["accuracy"]
                           for n, m in res.teachers.items()}
            best = max(teacher_val, key=teacher_val.get)
            signals: dict[str, Signal] = {n: cached_signal(m, res.splits["train"], top.path / f"outputs-{n}", backend,
                                                           res.pad_token_id) for n, m in res.teachers.items()}
            dev: Dataset = Subset(val, range(min(c.policy.dev_size, len(val))))
            for seed in c.seeds:
                for arm in c.arms:
                    signal, weighting = self._signal(arm, signals, best)
                    selected = weighting.sample_weights if weighting is not None else None
                    objective = supervised_objective() if signal is None else Objective(
                        Term("kd", kl_divergence, teacher=LOGITS, weight=c.kd.alpha, sample_weight=selected,
                             temperature=c.kd.temperature),
                        Term("ce", cross_entropy, target="label", weight=1 - c.kd.alpha))
                    callbacks = [PolicyReward(weighting, dev=dev if c.policy.reward != "train_loss" else None,
                                              kind=c.policy.reward)] if weighting is not None else []
                    students[arm][seed] = fit_with_callbacks(
                        res.build_student(seed), single_phase(objective, c.student.train), res,
                        top.path / f"{arm}-seed{seed}", backend, seed=seed, batch_size=c.student.train.batch_size,
                        config={"recipe": c.model_dump(), "arm": arm, "seed": seed}, label=f"{arm} s{seed}",
                        progress=progress, teacher=signal, callbacks=callbacks, resume=context.resume)
                    if weighting is not None:
                        self.policies[seed] = weighting
                        selection[str(seed)] = weighting.selection_rates().nan_to_num(0.0).tolist()
        console.print("evaluating on the test split")
        test = res.splits["test"]
        results = {"teachers": {n: classifier_metrics(m, test, backend, res.pad_token_id)[0]
                                for n, m in res.teachers.items()},
                   "teacher_val_accuracy": teacher_val, "best_single": best,
                   "seeds": score_arms(students, test, backend, res.pad_token_id), "selection_rates": selection,
                   "teacher_train_class_accuracy": self._class_accuracy(res, backend)}
        results["selection_vs_reliability"] = _correlations(selection, results["teacher_train_class_accuracy"])
        top.write_json("results.json", results)
        self._report(top, results, res, context)
        return top.path

    @staticmethod
    def _class_accuracy(res: TextResources, backend: Backend) -> list[list[float]]:
        """Each teacher's accuracy on the training texts of each gold class, ``[C][T]``."""
        columns = []
        for model in res.teachers.values():
            logits, labels = predict_logits(model, res.splits["train"], backend, pad_token_id=res.pad_token_id)
            right = (logits.argmax(-1) == labels).double()
            hits = torch.zeros(res.num_classes, dtype=torch.float64).index_add_(0, labels, right)
            seen = torch.zeros(res.num_classes, dtype=torch.float64).index_add_(0, labels, torch.ones_like(right))
            columns.append((hits / seen.clamp_min(1)).tolist())
        return [list(row) for row in zip(*columns)]

    def _report(self, top: RunDir, results: dict, res: TextResources, context: RunContext) -> Path:
        c = self.config
        rows = [{"arm": f"teacher {n}", "accuracy %": f"{100 * m['accuracy']:.2f}", "ECE %": f"{100 * m['ece']:.2f}",
                 "NLL": f"{m['nll']:.3f}"} for n, m in results["teachers"].items()]
        rows += arm_rows(results["seeds"], LABELS)
        means = {a: mean_accuracy(s) for a, s in results["seeds"].items()}
        claims = []
        if {"rl", "uniform"} <= means.keys():
            claims.append(f"RL ≥ uniform {'holds' if means['rl'] >= means['uniform'] else 'does not hold'} "
                          f"({means['rl']:.2f} vs {means['uniform']:.2f})")
        if {"uniform", "best-single"} <= means.keys():
            held = "holds" if means["uniform"] > means["best-single"] else "does not hold"
            claims.append(f"uniform > best single {held} ({means['uniform']:.2f} vs {means['best-single']:.2f})")
        corr = results["selection_vs_reliability"]
        names = list(res.teachers)
        rates = [{"teacher": n, "selection rate (mean over classes and seeds)": format_mean_std(
            [sum(r[k] for r in sel) / len(sel) for sel in results["selection_rates"].values()])}
            for k, n in enumerate(names)] if results["selection_rates"] else []
        summary = (f"{'; '.join(claims) or 'see the table'} (mean test accuracy %, {len(c.seeds)} seeds). "
                   f"Correlation between the policy's per-class selection rate and the teacher's per-class training "
                   f"accuracy: {format_mean_std(corr, 3) if corr else 'n/a'} (the spec expects positive).\n\n"
                   f"Teachers: {'; '.join(f'{k}: {v}' for k, v in res.notes.items())}. Best single on validation: "
                   f"{results['best_single']}. Reward: {c.policy.reward}; KD τ = {c.kd.temperature}, α = {c.kd.alpha}. "
                   f"Train {len(res.splits['train'])} / test {len(res.splits['test'])} texts.\n")
        return arm_report(top, "Reinforced multi-teacher selection on the WordNet gloss task", summary, rows,
                          context, extra=[("Policy selection rates", markdown_table(rates))])


def _correlations(selection: dict[str, list[list[float]]], reliability: list[list[float]]) -> list[float]:
    """Per seed, Pearson r between selection rates and teacher class accuracies over all (class, teacher) pairs."""
    out = []
    acc = torch.tensor(reliability, dtype=torch.float64).reshape(-1)
    for rates in selection.values():
        r = torch.tensor(rates, dtype=torch.float64).reshape(-1)
        if r.std() > 0 and acc.std() > 0:
            out.append(float(torch.corrcoef(torch.stack([r, acc]))[0, 1]))
    return out


def build(config: RLConfig) -> RLPlan:
    """The plan for a validated ``rl-multi-teacher`` config."""
    return RLPlan(config)


METHOD = Method(name="rl-multi-teacher", config_model=RLConfig, build=build, domain="nlu",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="Reinforced multi-teacher selection: a REINFORCE policy weighs MiniLM and small BERT teachers")
