"""Label ambiguity: lower-layer self-distillation (S1) and layer pruning with lower-layer distillation (S2).

- S1, ``ambiguity-selfkd``: Park, Jeong, Cho & Park, "Self-Knowledge Distillation for Learning Ambiguity",
  arXiv:2406.09719 (2024). Fine-tuning with a detached probe head on a lower layer ℓ:
  ``L₁ = (1−λ)·CE(y, p_L) + CE(y, p_ℓ) + λ·KL(sg[p_ℓ] ‖ p_L)``; then re-calibration trains the classifier on
  the training samples that ``p_ℓ`` flags as extremely ambiguous (top-q entropy by default), toward ``p_ℓ``.
  Arms: ``ce`` (scratch), ``kd`` (Hinton KD from the study's CE-fine-tuned teacher of the same architecture:
  plain self-distillation), ``self-kd`` (phase 1 alone) and ``self-kd-recal`` (variant, both phases).
- S2, ``ambiguity-prune``: Park & Park, "Deep Model Compression Also Helps Models Capture Ambiguity",
  ACL 2023, arXiv:2306.07061. The study's teacher is the CE-fine-tuned model; every layer of it is probed, the
  layer ℓ* where validation accuracy plateaus found, the layers above ℓ* dropped, and the pruned model trained
  with ``(1−λ)·CE(y, p) + λ·τ²·KL(p_src^τ ‖ p^τ)``. Arms: ``lower-kd`` (variant: p_src the frozen probe of
  layer ``ℓ_d = max(1, ℓ* − offset)``), ``top-kd`` (kd: p_src the full teacher's own output), ``pruned-ce``
  (scratch: the pruned model, CE only) and ``full-ce`` (baseline: the full model fine-tuned per seed).

Every student is scored against the human distributions (``kd_nlu.ambiguity.task``; headline JSD, lower is
better). The papers' exact λ, τ, ℓ, q are not in what we could read (their abstracts); the defaults are our
inferences from a small CPU pilot.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.checkpoint import load_weights, save_weights
from kd_core.engine import Phase, adamw, cosine_lr
from kd_core.errors import ConfigError, RunDirError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import count_parameters, format_mean_std
from kd_core.objective import Objective, Term
from kd_core.plots import save_figure
from kd_core.recipes import RunContext
from kd_core.report import markdown_table
from kd_core.study import Arm, ArmRun, cached_teacher, compare_arms, supervised_phases
from kd_core.study_recipe import StudyPlan, StudyRecipe
from kd_core.task import Task
from pydantic import Field, model_validator
from torch import nn

from kd_nlu.ambiguity.evaluation import AMBIGUOUS_TOP, predict_logits, score
from kd_nlu.ambiguity.layers import check_layer, layer_paths
from kd_nlu.ambiguity.lower_layer import LayerClassifier, SelfDistillModel, head_lr_adamw, lower_layer_kl
from kd_nlu.ambiguity.plateau import distillation_layer, plateau_layer
from kd_nlu.ambiguity.probes import (
    FeatureDataset,
    ProbeBank,
    layer_accuracies,
    layer_features,
    probe_logits,
    train_probes,
)
from kd_nlu.ambiguity.pruning import prune_layers
from kd_nlu.ambiguity.recalibration import TargetsDataset, flag_ambiguous, recalibration_objective
from kd_nlu.ambiguity.task import AmbiguityData, ambiguity_task
from kd_nlu.methods.common import (
    KDSection,
    Strict,
    TrainConfig,
    hinton_objective,
    read_json,
    text_method,
)

SCALE_NOTE = ("JSD is shown ×100 in the tables and comparisons above (marked %, though it is a distance in "
              "[0, 1]); the ambiguity-metrics section below gives it raw.")
COLUMNS = (("accuracy", 100, 2), ("jsd", 1, 4), ("jsd_ambiguous", 1, 4), ("kl", 1, 4), ("ece", 100, 2),
           ("confidence_wrong", 1, 3), ("lower_jsd", 1, 4))


def task(config: Any, context: RunContext) -> Task:
    """The recipe's texts with human distributions and its model (``kd_nlu.ambiguity.task``)."""
    return ambiguity_task(config.data, config.model, context)


class AmbiguityPlan(StudyPlan):
    """The study; ``kd-nlu eval RUN`` re-scores every saved student (``<arm>-seed<seed>/model``, pruned or not)."""

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """JSD, accuracy and KL of every arm's saved model on the test split."""
        from transformers import AutoModelForSequenceClassification

        study = self.study(RunContext(out=Path(run), device=device))
        test, scores = study.test_batches(), {}
        for arm in study.arms:
            for seed in study.seeds:
                folder = Path(run) / f"{arm}-seed{seed}" / "model"
                if not (folder / "config.json").is_file():
                    raise RunDirError("RUN", "a finished run with every arm's saved model", str(folder))
                model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True,
                                                                           attn_implementation="eager")
                metrics = study.score(model.to(study.backend.device), test)
                scores.update({f"{arm}/seed{seed}/{k}": metrics[k] for k in ("jsd", "accuracy", "kl")})
        return scores


def subset_comparisons(results: dict[str, Any]) -> str:
    """The study's pairs compared again on ``jsd_ambiguous`` (the samples whose human top probability is at most
    0.6), with the same paired interval and verdict rule, as a paired-comparisons table; empty without them."""
    rows = []
    for c in results.get("comparisons", []):
        d = compare_arms(results, c["a"], c["b"], "jsd_ambiguous", higher_is_better=False)
        if d is None:
            continue
        rows.append({"a": d.a, "b": d.b, "metric": d.metric, "mean a − b": f"{d.mean:+.4f}",
                     "95 % CI": "n/a (n = 1)" if d.low is None else f"{d.low:+.4f} to {d.high:+.4f}",
                     "seeds": d.n, "verdict": d.verdict})
    return markdown_table(rows) if rows else ""


def metrics_section(results: dict[str, Any]) -> tuple[str, str]:
    """Every ambiguity metric per arm (mean ± std over seeds), the teacher first, and the pairs compared on the
    ambiguous samples."""
    runs = {name: list(arm["seeds"].values()) for name, arm in results["arms"].items()}
    if "teacher" in results:
        runs = {"teacher": [results["teacher"]["test"]], **runs}
    columns = [c for c in COLUMNS if any(c[0] in r for values in runs.values() for r in values)]
    rows = [{"model": name, **{k: format_mean_std([r[k] for r in values], digits=d, scale=scale) if k in values[0]
                               else "n/a" for k, scale, d in columns}} for name, values in runs.items()]
    share = [r["ambiguous_share"] for values in runs.values() for r in values if "ambiguous_share" in r]
    subset = subset_comparisons(results)
    return ("Ambiguity metrics (test split)", markdown_table(rows) + "\naccuracy and ECE in %, against the majority "
            "labels; JSD is the Jensen–Shannon distance (log base 2) and KL is KL(human ‖ model) in nats, against "
            "the human distributions (both raw here); jsd_ambiguous is JSD on the ambiguous test samples (human top "
            f"probability ≤ {AMBIGUOUS_TOP}{f', {100 * share[0]:.1f} % of the test split' if share else ''}); "
            "lower_jsd is S1's lower head. Mean ± std over seeds.\n"
            + (f"\nThe same pairs on the ambiguous samples (JSD, lower is better):\n\n{subset}" if subset else ""))


# ---------------------------------------------------------------------------------------------------------
# S1: self-knowledge distillation from a lower layer, then re-calibration


class SelfKDConfig(Strict):
    """Phase 1: the lower layer ℓ (1-based, strictly below the top), λ, τ, the lower head's pooling and its own
    learning rate ``head_lr`` (a probe on detached features barely moves at a fine-tuning rate).

    Mean pooling by default: MiniLM-L6 (a sentence-transformers model trained with mean pooling) carries
    almost nothing in its lower layers' [CLS] vector, so a [CLS] lower head distils a constant prior.
    """

    layer: Annotated[int, Field(ge=1)] = 2
    lam: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 1.0
    pooling: Literal["cls", "mean"] = "mean"
    head_lr: Annotated[float, Field(gt=0)] = 1e-3


class RecalibrationConfig(Strict):
    """Phase 2: which samples are flagged (rule, fraction q), how long the classifier re-calibrates, and what
    trains: ``head`` (default) only the classification head on top of the encoder (the paper re-calibrates the
    classifier), ``all`` the whole model."""

    rule: Literal["entropy", "margin", "disagreement"] = "entropy"
    trainable: Literal["head", "all"] = "head"
    quantile: Annotated[float, Field(ge=0, le=1)] = 0.3
    temperature: Annotated[float, Field(gt=0)] = 1.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0
    train: TrainConfig = TrainConfig(epochs=3, lr=2e-5)


SelfKDArm = Literal["ce", "kd", "self-kd", "self-kd-recal"]


class SelfKDRecipe(StudyRecipe):
    """The ``ambiguity-selfkd`` recipe (S1). ``train`` trains the teacher and every arm's first phase."""

    method: Literal["ambiguity-selfkd"] = "ambiguity-selfkd"
    data: AmbiguityData = AmbiguityData()
    model: str = "minilm"
    train: TrainConfig = TrainConfig(epochs=4, lr=5e-5)
    selfkd: SelfKDConfig = SelfKDConfig()
    recalibration: RecalibrationConfig = RecalibrationConfig()
    kd: KDSection = KDSection(temperature=1.0, alpha=0.5)
    arms: Annotated[list[SelfKDArm], Field(min_length=1)] = Field(
        default_factory=lambda: ["ce", "kd", "self-kd", "self-kd-recal"])

    @model_validator(mode="after")
    def _unique(self) -> SelfKDRecipe:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        return self


def selfkd_objective(lam: float, temperature: float = 1.0) -> Objective:
    """``(1−λ)·CE(y, p_L) + CE(y, p_ℓ) + λ·KL(sg[p_ℓ] ‖ p_L)`` over a ``SelfDistillModel``'s taps."""
    if not 0 <= lam <= 1:
        raise ConfigError("lam", "λ in [0, 1]", lam)
    return Objective(
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - lam),
        Term("lower_ce", cross_entropy, student="lower_head", target="label", weight=1.0),
        Term("self_kd", lower_layer_kl, student="pair", weight=lam, temperature=temperature),
    )


def recalibrate(config: SelfKDRecipe, run: ArmRun) -> nn.Module:
    """Phase 2 on ``run.student`` (a trained ``SelfDistillModel``): flag the ambiguous training samples by its lower
    head, then train the classifier toward the lower head on them; ``recalibration.json`` records the flags."""
    r, data = config.recalibration, run.study.task.data
    lower = predict_logits(run.student, data.train, run.study.task.collate.pad_token_id, tap="lower_head")
    mask = flag_ambiguous(torch.softmax(lower.double(), -1), r.quantile, r.rule, data.train.labels)
    for p in run.student.lower_head.parameters():  # the target distribution stays fixed
        p.requires_grad_(False)
    if r.trainable == "head":
        freeze_encoder(run.student.model)
    if bool(mask.any()):
        phase = Phase("recalibrate", recalibration_objective(r.temperature, r.ce_weight), epochs=r.train.epochs,
                      optimizer=adamw(r.train.lr, r.train.weight_decay), scheduler=cosine_lr)
        student = run.train([phase], train=TargetsDataset(data.train, lower, mask.nonzero().squeeze(-1)),
                            batch_size=r.train.batch_size)
    else:  # nothing flagged: the phase-1 student is final
        student = run.student
        save_weights(student, run.out / "checkpoints" / "final.safetensors")
    (run.out / "recalibration.json").write_text(json.dumps({"flagged": int(mask.sum()), "of": len(mask)}))
    return student


def freeze_encoder(model: nn.Module) -> list[str]:
    """Freeze a Hugging Face sequence classifier's encoder (``model.base_model``), leaving its task head trainable;
    return the names of the parameters that still train."""
    encoder = {id(p) for p in model.base_model.parameters()}
    if len(encoder) == len(list(model.parameters())):
        raise ConfigError("recalibration.trainable", "a model with a task head outside its encoder, or 'all'",
                          type(model).__name__)
    for p in model.parameters():
        p.requires_grad_(id(p) not in encoder)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def selfkd_arms(config: SelfKDRecipe, task: Task | None) -> dict[str, Arm]:
    """The S1 arms the recipe lists; a bad ``selfkd.layer`` fails here, before any training."""
    s, train = config.selfkd, config.train.train_spec()
    if task is not None:
        check_layer(s.layer, len(layer_paths(task.student(0))), "selfkd.layer", below_top=True)

    def student(seed: int) -> nn.Module:
        return SelfDistillModel(task.student(seed), s.layer, len(task.class_names), s.pooling)

    def phase1(model: SelfDistillModel) -> list[Phase]:
        return [Phase("selfkd", selfkd_objective(s.lam, s.temperature), epochs=train.epochs, scheduler=cosine_lr,
                      optimizer=head_lr_adamw(model.lower_head, train.lr, s.head_lr, train.weight_decay))]

    def fit(run: ArmRun) -> nn.Module:
        if run.name == "self-kd":
            return run.train(phase1(run.student))
        done = run.out.parent / f"self-kd-seed{run.seed}" / "checkpoints" / "final.safetensors"
        if "self-kd" in config.arms and done.is_file():  # the same seed's phase 1 already ran: the same student
            trained = load_weights(run.student, done)
        else:
            trained = dataclasses.replace(run, out=run.out.with_name(f"{run.name}-phase1-seed{run.seed}")).train(
                phase1(run.student))
        return recalibrate(config, dataclasses.replace(run, student=trained))

    final = "self-kd-recal" if "self-kd-recal" in config.arms else "self-kd"
    built = {
        "ce": Arm(lambda: supervised_phases(train), role="scratch", batch_size=train.batch_size,
                  description="cross-entropy on the majority labels"),
        "kd": Arm(lambda: train.phases(hinton_objective(config.kd)), role="kd", signal=cached_teacher(),
                  batch_size=train.batch_size, description=f"Hinton KD from the CE-fine-tuned teacher, τ = "
                                                           f"{config.kd.temperature}, α = {config.kd.alpha}"),
        "self-kd": Arm(lambda: [], role="variant" if final == "self-kd" else "baseline", student=student, fit=fit,
                       batch_size=train.batch_size, description=f"lower-layer self-KD from layer {s.layer}"),
        "self-kd-recal": Arm(lambda: [], role="variant", student=student, fit=fit, batch_size=train.batch_size,
                             description="self-KD, then re-calibration of the flagged samples")}
    return {name: built[name] for name in config.arms}


def selfkd_compare(config: SelfKDRecipe, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Plain KD against CE, the method against plain KD, CE and its first phase; the first phase against both."""
    pairs = [("kd", "ce"), ("self-kd-recal", "kd"), ("self-kd-recal", "ce"), ("self-kd-recal", "self-kd"),
             ("self-kd", "kd"), ("self-kd", "ce")]
    return [(a, b) for a, b in pairs if a in arms and b in arms]


def selfkd_notes(config: SelfKDRecipe, task: Task) -> str:
    """The settings behind the numbers."""
    s, r, t = config.selfkd, config.recalibration, config.train
    return (f"Model {config.model}; every arm and the teacher train {t.epochs} epochs at lr {t.lr} (batch "
            f"{t.batch_size}). Self-KD: layer {s.layer}, λ = {s.lam}, τ = {s.temperature}, {s.pooling} pooling, head "
            f"lr {s.head_lr}. Re-calibration: rule {r.rule}, q = {r.quantile}, {r.train.epochs} epochs at lr "
            f"{r.train.lr}, CE floor {r.ce_weight}, training {'the head only' if r.trainable == 'head' else 'all'}. "
            f"Gold = majority label (seeded ties). {SCALE_NOTE} The teacher "
            "is the ce arm's training on seed 0 (the kd arm distils from it).")


def selfkd_sections(config: SelfKDRecipe, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The ambiguity metrics of every arm, and how many training samples re-calibration flagged."""
    flags = {seed: read_json(run / f"self-kd-recal-seed{seed}" / "recalibration.json") for seed in results["seeds"]}
    text = "; ".join(f"seed {s}: {f['flagged']} of {f['of']}" for s, f in flags.items() if f)
    return [metrics_section(results)] + ([("Re-calibration", f"Flagged training samples ({config.recalibration.rule}, "
                                           f"q = {config.recalibration.quantile}): {text}.\n")] if text else [])


# ---------------------------------------------------------------------------------------------------------
# S2: probe, find the plateau, prune above it, distil the lower layer into the pruned model


class ProbeConfig(Strict):
    """Per-layer linear probes on frozen features, and the plateau tolerance ε (a fraction of accuracy)."""

    pooling: Literal["cls", "mean"] = "mean"
    epochs: Annotated[int, Field(gt=0)] = 30
    lr: Annotated[float, Field(gt=0)] = 1e-2
    batch_size: Annotated[int, Field(gt=0)] = 128
    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.005


class PruneDistillConfig(Strict):
    """The pruned model's training: ``ℓ_d = ℓ* − offset`` (at least 1), λ, τ and the schedule."""

    offset: Annotated[int, Field(ge=0)] = 1
    lam: Annotated[float, Field(ge=0, le=1)] = 1.0
    temperature: Annotated[float, Field(gt=0)] = 1.0
    train: TrainConfig = TrainConfig(epochs=3, lr=5e-5)


PruneArm = Literal["lower-kd", "top-kd", "pruned-ce", "full-ce", "full-extra"]
PRUNE_ROLES = {"lower-kd": "variant", "top-kd": "kd", "pruned-ce": "scratch", "full-ce": "baseline",
               "full-extra": "baseline"}


class PruneRecipe(StudyRecipe):
    """The ``ambiguity-prune`` recipe (S2). ``finetune`` trains the teacher and the ``full-ce`` arm."""

    method: Literal["ambiguity-prune"] = "ambiguity-prune"
    data: AmbiguityData = AmbiguityData()
    model: str = "minilm"
    finetune: TrainConfig = TrainConfig(epochs=4, lr=5e-5)
    probes: ProbeConfig = ProbeConfig()
    distill: PruneDistillConfig = PruneDistillConfig()
    arms: Annotated[list[PruneArm], Field(min_length=1)] = Field(
        default_factory=lambda: ["lower-kd", "top-kd", "pruned-ce", "full-ce", "full-extra"])

    @model_validator(mode="after")
    def _unique(self) -> PruneRecipe:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        return self


def prune_distill_objective(lam: float, temperature: float = 1.0) -> Objective:
    """``(1−λ)·CE(y, p) + λ·τ²·KL(p_src^τ ‖ p^τ)``, the teacher being a probe or the full model."""
    if not 0 <= lam <= 1:
        raise ConfigError("lam", "λ in [0, 1]", lam)
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=lam, temperature=temperature,
             direction="forward"),
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - lam),
    )


class LayerProbes:
    """The teacher's per-layer probes, computed once per study: the accuracy curve, ℓ*, ℓ_d and the frozen
    lower-layer classifier; ``<study>/probes.json`` keeps the curve."""

    def __init__(self, config: PruneRecipe) -> None:
        self.config, self.curve, self.lower = config, {}, None

    def get(self, run: ArmRun) -> dict[str, Any]:
        """The curve (computed on the first call)."""
        if self.curve:
            return self.curve
        p, task, teacher = self.config.probes, run.study.task, run.teacher
        parts = task.extras["parts"]
        features = {name: layer_features(teacher, getattr(task.data, name), task.collate, p.pooling,
                                         device=run.study.backend.device) for name in ("train", "val", "test")}
        n_layers, hidden = features["train"].shape[1:]
        bank = ProbeBank(n_layers, hidden, len(task.class_names), p.pooling)
        train_probes(bank, FeatureDataset(features["train"], parts["train"].labels), run.out.parent / "probes",
                     epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=0, backend=run.study.backend)
        test_logits = probe_logits(bank, features["test"])
        curve = {"val_accuracy": layer_accuracies(probe_logits(bank, features["val"]), parts["val"].labels),
                 "test_jsd": [score(test_logits[:, i], parts["test"])["jsd"] for i in range(n_layers)]}
        curve["plateau"] = plateau_layer(curve["val_accuracy"], p.tolerance)
        curve["distill_from"] = distillation_layer(curve["plateau"], self.config.distill.offset)
        curve["teacher_params"] = count_parameters(teacher)
        source = curve["distill_from"]
        self.lower = LayerClassifier(prune_layers(teacher, source), source, bank.heads[source - 1])
        (run.out.parent / "probes.json").write_text(json.dumps(curve, indent=1))
        self.curve = curve
        return curve


def prune_arms(config: PruneRecipe, task: Task | None) -> dict[str, Arm]:
    """The S2 arms the recipe lists; the pruned ones start from the teacher cut at its plateau layer."""
    probes, d = LayerProbes(config), config.distill
    train = d.train.train_spec()

    def fit(run: ArmRun) -> nn.Module:
        curve = probes.get(run)
        keep = curve["plateau"] if run.name != "full-extra" else len(curve["val_accuracy"])
        student = prune_layers(run.teacher, keep).requires_grad_(True)  # a copy: the teacher stays frozen
        run.metrics.update({"params": float(count_parameters(student)), "layers": float(keep)})
        pruned = dataclasses.replace(run, student=student)
        if run.name in ("pruned-ce", "full-extra"):  # full-extra: the whole teacher, the same extra CE epochs
            return pruned.train(supervised_phases(train))
        source = (cached_teacher()(run.teacher, run.out.parent) if run.name == "top-kd" else
                  cached_teacher("lower-outputs")(probes.lower, run.out.parent))
        return pruned.train(train.phases(prune_distill_objective(d.lam, d.temperature)), source)

    full = config.finetune.train_spec()
    descriptions = {"lower-kd": "pruned at ℓ*, distilled from the probe of layer ℓ_d",
                    "top-kd": "pruned at ℓ*, distilled from the full teacher's output",
                    "pruned-ce": "pruned at ℓ*, cross-entropy only", "full-ce": "the full model, cross-entropy",
                    "full-extra": "the full teacher, the pruned arms' extra epochs of cross-entropy"}
    return {name: Arm(lambda: supervised_phases(full), role=PRUNE_ROLES[name], fit=None if name == "full-ce" else fit,
                      batch_size=full.batch_size if name == "full-ce" else train.batch_size,
                      description=descriptions[name]) for name in config.arms}


def prune_compare(config: PruneRecipe, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Top-layer KD against the CE-only pruned twin; lower-layer KD against both and the full model."""
    pairs = [("top-kd", "pruned-ce"), ("lower-kd", "top-kd"), ("lower-kd", "pruned-ce"), ("lower-kd", "full-ce"),
             ("lower-kd", "full-extra"), ("pruned-ce", "full-ce")]
    return [(a, b) for a, b in pairs if a in arms and b in arms]


def prune_notes(config: PruneRecipe, task: Task) -> str:
    """The settings behind the numbers."""
    p, d, f = config.probes, config.distill, config.finetune
    return (f"Model {config.model}; the teacher and full-ce fine-tune {f.epochs} epochs at lr {f.lr}. Probes: "
            f"{p.pooling} pooling, {p.epochs} epochs at lr {p.lr}; ℓ* = the lowest layer within ε = {p.tolerance} of "
            f"the best probe's validation accuracy; ℓ_d = max(1, ℓ* − {d.offset}). Pruned arms: {d.train.epochs} "
            f"epochs at lr {d.train.lr}, λ = {d.lam}, τ = {d.temperature}. Gold = majority label (seeded ties). "
            f"{SCALE_NOTE} The teacher is the full-ce arm's training on seed 0.")


def prune_sections(config: PruneRecipe, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """The ambiguity metrics, and the teacher's per-layer probes with ℓ* and ℓ_d (table and plot)."""
    curve = read_json(run / "probes.json")
    if curve is None:
        return [metrics_section(results)]
    import matplotlib.pyplot as plt

    rows = [{"layer": i + 1, "val accuracy %": f"{100 * a:.2f}", "test JSD": f"{j:.4f}"}
            for i, (a, j) in enumerate(zip(curve["val_accuracy"], curve["test_jsd"], strict=True))]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = list(range(1, len(rows) + 1))
    ax.plot(x, curve["val_accuracy"], marker="o", label="val accuracy")
    ax.plot(x, curve["test_jsd"], marker="s", label="test JSD")
    ax.axvline(curve["plateau"], color="grey", linestyle="--", label="plateau ℓ*")
    ax.set(xlabel="layer", title="Per-layer probes of the teacher")
    ax.legend()
    save_figure(fig, run / "plots" / "layers.png")
    text = (f"Plateau ℓ* = {curve['plateau']} of {len(rows)} layers; distilled from layer ℓ_d = "
            f"{curve['distill_from']}. Teacher: {curve['teacher_params']:,} parameters. Layer-1 probe JSD "
            f"{curve['test_jsd'][0]:.4f} vs top-layer probe {curve['test_jsd'][-1]:.4f}.\n\n"
            f"{markdown_table(rows)}\n![Per-layer probes](plots/layers.png)\n")
    return [metrics_section(results), ("Per-layer probes", text), parameters_section(results, curve)]


def parameters_section(results: dict[str, Any], curve: dict[str, Any]) -> tuple[str, str]:
    """Parameters and layers kept per arm and seed; a pruned arm's seed that kept every layer is flagged."""
    total, rows = len(curve["val_accuracy"]), []
    for name, arm in results["arms"].items():
        for seed, r in arm["seeds"].items():
            layers = int(r["layers"]) if "layers" in r else total
            params = int(r["params"]) if "params" in r else arm["cost"]["params"]
            pruned = name in ("lower-kd", "top-kd", "pruned-ce")
            rows.append({"arm": name, "seed": seed, "layers": f"{layers} of {total}", "params": f"{params:,}",
                         "note": "**not pruned**" if pruned and layers == total else ""})
    return ("Parameters per seed", markdown_table(rows))


def _method(name: str, config: type[StudyRecipe], arms: Any, compare: Any, notes: Any, sections: Any,
            train: str, title: str, summary: str) -> Any:
    return text_method(name, config, arms=arms, compare=compare, notes=notes, extra=sections, task=task,
                       plan=AmbiguityPlan, teacher_training=lambda c: getattr(c, train).train_spec(),
                       title=lambda c, t: f"{title} on {t.description}", summary=summary)


SELFKD_METHOD = _method("ambiguity-selfkd", SelfKDRecipe, selfkd_arms, selfkd_compare, selfkd_notes, selfkd_sections,
                        "train", "Lower-layer self-KD and re-calibration (S1)",
                        "S1: lower-layer self-distillation + re-calibration of ambiguous samples, vs KD and CE "
                        "(VADER human distributions)")
PRUNE_METHOD = _method("ambiguity-prune", PruneRecipe, prune_arms, prune_compare, prune_notes, prune_sections,
                       "finetune", "Layer pruning with lower-layer KD (S2)",
                       "S2: per-layer probes, prune above the accuracy plateau, distil the lower layer; vs top-layer "
                       "KD, the pruned CE twin and the full model (VADER human distributions)")
