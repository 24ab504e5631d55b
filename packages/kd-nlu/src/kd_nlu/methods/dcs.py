"""DCS, dynamic corrective self-distillation: a fine-tuned teacher corrects a same-architecture student.

Amara, Jain and Chadha, "Dynamic Corrective Self-Distillation for Better Fine-Tuning of Pretrained Models",
arXiv:2312.07028 (2023); the weight rule is our reconstruction (see ``kd_core.sample_weights``). The student
minimises, per mini-batch, Σ w_i [(1 − λ)·CE(y_i, p_S) + λ·τ²·KL(p_T^τ ‖ p_S^τ)] / Σ w_i, with boosting-style
per-sample weights w_i that ``CorrectiveWeights`` raises where student and teacher disagree: the terms read
them through ``Term(..., sample_weight=weights)`` and ``weights.observer()`` records the discordance.

Arms, each from the same initialisation per seed and with the same epochs: ``finetune`` (scratch: CE only),
``self-kd`` (kd: the same KD objective with uniform weights) and ``dcs`` (variant). The teacher is fine-tuned by
the study on the same (small: DCS targets low-resource fine-tuning) training split and stays fixed; its logits
are computed once for every arm. By default teacher and student are both MiniLM-L6 on 500 WordNet glosses, as
in the paper's self-distillation from one pretrained checkpoint; any text task of ``kd_nlu.tasks`` works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.sample_weights import CorrectiveWeights
from kd_core.study import Arm, ArmRun, cached_teacher, supervised_phases
from kd_core.study_recipe import StudyRecipe
from kd_core.taps import LOGITS
from kd_core.task import Task
from pydantic import Field, model_validator
from torch import nn

from kd_nlu.methods.common import Strict, read_json, text_method
from kd_nlu.tasks import TextData, TextModel

ArmName = Literal["finetune", "self-kd", "dcs"]
ROLES = {"finetune": "scratch", "self-kd": "kd", "dcs": "variant"}
WEIGHTS_FILE = "dcs-weights.json"


class DCSSection(Strict):
    """λ (KD weight), τ, when the weights update, their cap and the discordance kind."""

    lam: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 2.0
    every: Literal["step", "epoch"] = "step"
    cap: Annotated[float, Field(ge=1)] = 10.0
    soft: bool = False


class DCSConfig(StudyRecipe):
    """The ``dcs`` recipe: 500 training glosses, MiniLM teacher and student by default."""

    method: Literal["dcs"] = "dcs"
    data: TextData = TextData(train_size=500, max_length=32)
    teacher: TextModel = TextModel(model="minilm", epochs=6, lr=1e-4)
    student: TextModel = TextModel(model="minilm", epochs=6, lr=1e-4)
    dcs: DCSSection = DCSSection()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(default_factory=lambda: ["finetune", "self-kd", "dcs"])

    @model_validator(mode="after")
    def _consistent(self) -> DCSConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        return self


def dcs_objective(section: DCSSection, weights: CorrectiveWeights | None) -> Objective:
    """(1 − λ)·CE + λ·τ²·KL, per sample weighted by ``weights`` (uniform when None), plus a logged discordance."""
    terms = [Term("kd", kl_divergence, teacher=LOGITS, weight=section.lam, sample_weight=weights,
                  temperature=section.temperature),
             Term("ce", cross_entropy, target="label", weight=1 - section.lam, sample_weight=weights)]
    if weights is not None:
        terms.append(weights.observer())
    return Objective(*terms)


def arms(config: DCSConfig, task: Task) -> dict[str, Arm]:
    """``finetune``, ``self-kd`` and ``dcs`` as the recipe lists them; DCS keeps its weight history per run."""
    train, d = config.student.train_spec(), config.dcs
    signal = cached_teacher()

    def fit_dcs(run: ArmRun) -> nn.Module:
        weights = CorrectiveWeights(len(run.study.task.data.train), every=d.every, cap=d.cap, soft=d.soft)
        student = run.train(train.phases(dcs_objective(d, weights)), signal(run.teacher, run.out.parent),
                            extra_callbacks=[weights])
        (run.out / WEIGHTS_FILE).write_text(json.dumps(weights.history))
        return student

    built = {
        "finetune": Arm(lambda: supervised_phases(train), role="scratch", batch_size=train.batch_size,
                        description="cross-entropy on the labels alone"),
        "self-kd": Arm(lambda: train.phases(dcs_objective(d, None)), role="kd", signal=signal,
                       batch_size=train.batch_size, description=f"(1 − λ)·CE + λ·τ²·KL, λ = {d.lam}, τ = "
                                                                f"{d.temperature}, uniform weights"),
        "dcs": Arm(lambda: train.phases(dcs_objective(d, None)), role="variant", signal=signal, fit=fit_dcs,
                   batch_size=train.batch_size, description=f"the same, corrective per-sample weights (every "
                                                            f"{d.every}, cap {d.cap})")}
    return {name: built[name] for name in config.arms}


def notes(config: DCSConfig, task: Task) -> str:
    """The settings behind the numbers."""
    d, s, t = config.dcs, config.student, config.teacher
    return (f"DCS: λ = {d.lam}, τ = {d.temperature}, weights updated every {d.every} (ε = weighted discordance, "
            f"α = ½ ln((1 − ε)/ε), w ← w·exp(α·d), mean 1, cap {d.cap}), {'soft' if d.soft else 'arg-max'} "
            f"discordance. Student {s.model}: {s.epochs} epochs, AdamW lr {s.lr}, batch {s.batch_size}. Teacher "
            f"{t.model}: fine-tuned {t.epochs} epochs at lr {t.lr} on the same training split unless it came "
            "trained. The paper expects dcs ≥ self-kd ≥ finetune.")


def weight_section(config: DCSConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """How far the corrective weights moved: updates, mean ε and the largest weight, per seed."""
    rows = []
    for seed in results["seeds"]:
        history = read_json(run / f"dcs-seed{seed}" / WEIGHTS_FILE)
        if history:
            rows.append(f"| {seed} | {len(history)} | {sum(h['epsilon'] for h in history) / len(history):.4f} | "
                        f"{max(h['max_weight'] for h in history):.2f} | {history[-1]['discordance']:.3f} |")
    if not rows:
        return []
    table = "| seed | updates | mean ε | largest w / mean | last discordance |\n|---|---|---|---|---|\n"
    return [("DCS weights", table + "\n".join(rows) + "\n\nε is the weighted share of samples on which student and "
             "teacher disagree at an update; every sub-run's `dcs-weights.json` holds each update.\n")]


METHOD = text_method("dcs", DCSConfig, arms=arms, notes=notes, extra=weight_section,
                     title=lambda c, t: f"DCS vs uniform self-distillation vs fine-tuning on {t.description}",
                     summary="DCS: boosting-style corrective per-sample weights for self-distillation (MiniLM on 500 "
                             "glosses, or your texts and models)")
