"""Annealing-KD for text classification: fine-tuned MiniLM -> small BERT on the WordNet gloss task.

Jafari, Rezagholizadeh, Sharma and Ghodsi, "Annealing Knowledge Distillation", EACL 2021 (arXiv:2104.07163);
reference code in huawei-noah/Efficient-NLP, ``Annealing_KD/``. Phase I regresses the student's logits onto
Φ(T)·z_t with T stepping from τ_max down to 1 (``kd_core.annealing``: ``AnnealedScale``, ``annealing_phases``);
the best phase-I student by validation accuracy is restored; phase II is cross-entropy on the labels with a
fresh optimizer.

Arms, each from the same student initialisation per seed and with the same epoch budget E₁ + E₂:
``annealing-kd``; ``mse-kd`` (Φ ≡ 1, the control a third-party replication asks for); ``hinton-kd``
(α·τ²·KL + (1 − α)·CE); ``scratch`` (CE). The GLUE setting of the paper's code is τ_max = 7, E₁ = 14, E₂ = 4
with AdamW and linear decay; the default recipe halves the epochs for a CPU and uses cosine decay restarted
in each phase. The teacher's logits are computed once and served from a ``CachedTeacher``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from kd_core import Backend
from kd_core.annealing import AnnealedScale, annealing_phases
from kd_core.engine import Phase, adamw, cosine_lr
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.runs import RunDir
from kd_core.taps import LOGITS
from pydantic import Field, model_validator
from torch import nn

from kd_nlu.methods.common import (
    KDSection,
    Strict,
    TrainConfig,
    classifier_metrics,
    open_run,
    single_phase,
    supervised_objective,
)
from kd_nlu.methods.dcs import (
    StudentSpec,
    TextResources,
    arm_report,
    arm_rows,
    cached_signal,
    evaluate_arms,
    fit_with_callbacks,
    gloss_resources,
    mean_accuracy,
    score_arms,
)
from kd_nlu.models.teacher import GlossTeacherConfig

AnnealingArm = Literal["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
LABELS = {"annealing-kd": "annealing-KD", "mse-kd": "MSE-KD (no annealing)", "hinton-kd": "vanilla KD (Hinton)",
          "scratch": "scratch (CE)"}


class AnnealingSection(Strict):
    """τ_max and the two phases' lengths (E₁ ≥ τ_max); phase II's learning rate (default: the student's)."""

    tau_max: Annotated[int, Field(ge=1)] = 7
    phase1_epochs: Annotated[int, Field(gt=0)] = 7
    phase2_epochs: Annotated[int, Field(gt=0)] = 3
    phase2_lr: Annotated[float, Field(gt=0)] | None = None




class AnnealingTextConfig(RecipeConfig):
    """The ``annealing-kd`` recipe of kd-nlu. ``teacher`` is N1's ``GlossTeacherConfig`` (also the students' data)."""

    method: Literal["annealing-kd"] = "annealing-kd"
    teacher: GlossTeacherConfig = GlossTeacherConfig()
    student: StudentSpec = StudentSpec()
    annealing: AnnealingSection = AnnealingSection()
    kd: KDSection = KDSection()
    arms: Annotated[list[AnnealingArm], Field(min_length=1)] = Field(
        default_factory=lambda: ["annealing-kd", "mse-kd", "hinton-kd", "scratch"])
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0
    reuse_teacher: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> AnnealingTextConfig:
        if len(set(self.arms)) != len(self.arms) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"arms and seeds must not repeat, received {self.arms} and {self.seeds}")
        a = self.annealing
        if "annealing-kd" in self.arms and a.phase1_epochs < a.tau_max:
            raise ValueError(f"annealing.phase1_epochs must be at least annealing.tau_max ({a.tau_max}), "
                             f"received {a.phase1_epochs}")
        return self


def arm_phases(config: AnnealingTextConfig, arm: str) -> list[Phase]:
    """The phases of one arm (checked when built, before any training)."""
    s, a = config.student.train, config.annealing
    if arm in ("annealing-kd", "mse-kd"):
        return annealing_phases(a.tau_max, a.phase1_epochs, a.phase2_epochs, anneal=arm == "annealing-kd",
                                phase1_optimizer=adamw(s.lr, s.weight_decay),
                                phase2_optimizer=adamw(a.phase2_lr or s.lr, s.weight_decay), scheduler=cosine_lr)
    budget = TrainConfig(epochs=a.phase1_epochs + a.phase2_epochs, lr=s.lr, batch_size=s.batch_size,
                         weight_decay=s.weight_decay)
    if arm == "scratch":
        return single_phase(supervised_objective(), budget)
    kd = config.kd
    return single_phase(Objective(
        Term("kd", kl_divergence, teacher=LOGITS, weight=kd.alpha, temperature=kd.temperature),
        Term("ce", cross_entropy, target="label", weight=1 - kd.alpha)), budget)


class AnnealingTextPlan:
    """Teacher once; every arm for every seed; test metrics and a report."""

    def __init__(self, config: AnnealingTextConfig, resources: TextResources | None = None) -> None:
        self.config = config
        self.resources = resources
        for arm in config.arms:
            arm_phases(config, arm)

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Test metrics of every arm's final student in a finished run (``kd-nlu eval RUN``)."""
        return evaluate_arms(run, self.config, self.resources, device)

    def run(self, context: RunContext) -> Path:
        """Train, compare and report under ``context.out``."""
        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seeds[0], backend)
        students: dict[str, dict[int, nn.Module]] = {arm: {} for arm in c.arms}
        with progress_bar() as progress:
            if self.resources is None:
                self.resources = gloss_resources(c.teacher, c.student, backend, progress, top.path / "teacher",
                                                 c.reuse_teacher)
            res = self.resources
            teacher = next(iter(res.teachers.values()))
            signal = cached_signal(teacher, res.splits["train"], top.path / "teacher-outputs", backend,
                                   res.pad_token_id)
            for seed in c.seeds:
                for arm in c.arms:
                    students[arm][seed] = fit_with_callbacks(
                        res.build_student(seed), arm_phases(c, arm), res, top.path / f"{arm}-seed{seed}", backend,
                        seed=seed, batch_size=c.student.train.batch_size,
                        config={"recipe": c.model_dump(), "arm": arm, "seed": seed}, label=f"{arm} s{seed}",
                        progress=progress, teacher=signal if arm != "scratch" else None, resume=context.resume,
                        clip_grad_norm=c.clip_grad_norm)
        console.print("evaluating on the test split")
        scores = score_arms(students, res.splits["test"], backend, res.pad_token_id)
        results = {"teacher": classifier_metrics(teacher, res.splits["test"], backend, res.pad_token_id)[0],
                   "seeds": scores,
                   "phi": AnnealedScale(c.annealing.tau_max, c.annealing.phase1_epochs).values()
                   if c.annealing.phase1_epochs >= c.annealing.tau_max else None}
        top.write_json("results.json", results)
        self._report(top, results, res, context)
        return top.path

    def _report(self, top: RunDir, results: dict[str, Any], res: TextResources, context: RunContext) -> Path:
        c = self.config
        rows = [{"arm": "teacher (fine-tuned MiniLM)", "accuracy %": f"{100 * results['teacher']['accuracy']:.2f}",
                 "ECE %": f"{100 * results['teacher']['ece']:.2f}", "NLL": f"{results['teacher']['nll']:.3f}"}]
        rows += arm_rows(results["seeds"], LABELS)
        means = {a: mean_accuracy(s) for a, s in results["seeds"].items()}
        claims = []
        if {"annealing-kd", "hinton-kd"} <= means.keys():
            held = "holds" if means["annealing-kd"] >= means["hinton-kd"] else "does not hold"
            claims.append(f"annealing-KD ≥ vanilla KD {held} ({means['annealing-kd']:.2f} vs {means['hinton-kd']:.2f})")
        if {"annealing-kd", "mse-kd"} <= means.keys():
            held = "holds" if means["annealing-kd"] > means["mse-kd"] else "does not hold"
            claims.append(f"annealing-KD > MSE without annealing {held} "
                          f"({means['annealing-kd']:.2f} vs {means['mse-kd']:.2f})")
        a = c.annealing
        summary = (f"{'; '.join(claims) or 'see the table'} (mean test accuracy %, {len(c.seeds)} seeds).\n\n"
                   f"τ_max = {a.tau_max}, E₁ = {a.phase1_epochs}, E₂ = {a.phase2_epochs}; Φ per phase-I epoch: "
                   f"{results['phi']}. Student: {c.student.init} BERT, {c.student.layers} layers, hidden "
                   f"{c.student.hidden}, AdamW lr {c.student.train.lr}. Teacher: "
                   f"{'; '.join(res.notes.values()) or 'given'}. Train {len(res.splits['train'])} / test "
                   f"{len(res.splits['test'])} texts.\n")
        return arm_report(top, "Annealing-KD on the WordNet gloss task", summary, rows, context)


def build(config: AnnealingTextConfig) -> AnnealingTextPlan:
    """The plan for a validated kd-nlu ``annealing-kd`` config."""
    return AnnealingTextPlan(config)


METHOD = Method(name="annealing-kd", config_model=AnnealingTextConfig, build=build, domain="nlu",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="Annealing-KD: annealed logit MSE then CE, MiniLM -> small BERT on glosses")
