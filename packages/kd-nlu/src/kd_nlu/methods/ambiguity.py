"""Label ambiguity: lower-layer self-distillation (S1) and layer pruning with lower-layer distillation (S2).

- S1, ``ambiguity-selfkd``: Park, Jeong, Cho & Park, "Self-Knowledge Distillation for Learning Ambiguity",
  arXiv:2406.09719 (2024). One fine-tuning run with a detached probe head on a lower layer ℓ:
  ``L₁ = (1−λ)·CE(y, p_L) + CE(y, p_ℓ) + λ·KL(sg[p_ℓ] ‖ p_L)``; then a re-calibration phase trains the
  classifier on the training samples that ``p_ℓ`` flags as extremely ambiguous (top-q entropy by default),
  toward ``p_ℓ`` with KL only.
- S2, ``ambiguity-prune``: Park & Park, "Deep Model Compression Also Helps Models Capture Ambiguity",
  ACL 2023, arXiv:2306.07061. Fine-tune with CE; probe every layer; find the layer ℓ* where validation
  accuracy plateaus; drop the layers above ℓ*; train the pruned model with
  ``(1−λ)·CE(y, p) + λ·τ²·KL(p_{ℓ_d}^τ ‖ p^τ)`` where ``p_{ℓ_d}`` is the frozen probe of layer
  ``ℓ_d = max(1, ℓ* − offset)`` on the frozen fine-tuned trunk.

Both report accuracy (against majority labels), ECE, JSD (distance, base 2) and KL (nats) to the human
distributions, and the mean confidence of wrong predictions; default data: the VADER lexicon's human
rating distributions. The exact λ, τ, ℓ, q of the papers are not published in what we could read (their
abstracts), so they are our inferences; the defaults follow a small CPU pilot on synthetic 3-class data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.backends import Backend
from kd_core.engine import Phase, cosine_lr
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import count_parameters, format_mean_std
from kd_core.objective import Objective, Term
from kd_core.plots import plot_bars, save_figure
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from pydantic import Field
from torch import nn

from kd_nlu.ambiguity.data import AmbiguityTask, split_task, vader_task
from kd_nlu.ambiguity.evaluation import evaluate, predict_logits, score
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
from kd_nlu.data.text import TextCollator
from kd_nlu.methods.common import Strict, TrainConfig, fit_text, open_run, single_phase, supervised_objective

# (num_labels) -> (a sequence classifier, its tokenizer); the default loads the real MiniLM-L6 offline
Backbone = Callable[[int], tuple[nn.Module, Any]]
METRICS = ("accuracy", "ece", "jsd", "kl", "confidence_wrong", "mean_confidence")


class DataConfig(Strict):
    """The task (VADER human distributions) and its split sizes; ``max_length`` in tokens."""

    source: Literal["vader"] = "vader"
    train_size: Annotated[int, Field(gt=0)] = 4000
    val_size: Annotated[int, Field(gt=0)] = 1000
    test_size: Annotated[int, Field(gt=0)] = 2000
    max_length: Annotated[int, Field(ge=2)] = 16
    split_seed: int = 0


class ModelConfig(Strict):
    """The encoder: the real MiniLM-L6 (``kd_nlu.models.teacher.load_minilm``), loaded offline."""

    name: Literal["minilm"] = "minilm"


def minilm_backbone(num_labels: int) -> tuple[nn.Module, Any]:
    """MiniLM-L6 with a fresh ``num_labels``-way classification head, and its tokenizer."""
    from kd_nlu.models.teacher import load_minilm

    return load_minilm(num_labels)


# ---------------------------------------------------------------------------------------------------------
# shared plan pieces


class _AmbiguityPlan:
    """Data, backbone and report helpers shared by both plans."""

    title = ""

    def __init__(self, config: Any, task: AmbiguityTask | None = None, backbone: Backbone | None = None) -> None:
        self.config = config
        self._task = task
        self.backbone = backbone or minilm_backbone

    def _splits(self) -> dict[str, AmbiguityTask]:
        c = self.config.data
        task = self._task if self._task is not None else vader_task(tie_seed=c.split_seed)
        return split_task(task, c.train_size, c.val_size, c.test_size, seed=c.split_seed)

    def _model(self, seed: int, num_labels: int) -> tuple[nn.Module, Any]:
        torch.manual_seed(seed)
        return self.backbone(num_labels)

    def _open(self, context: RunContext, backend: Backend) -> RunDir:
        return open_run(context, self.config.model_dump(), self.config.seeds[0], backend)

    def _fit(self, model: nn.Module, phases, train, val, out: Path, backend: Backend, tokenizer, seed: int,
             batch_size: int, label: str, progress, teacher: nn.Module | None = None) -> tuple[nn.Module, float]:
        start = time.perf_counter()
        model = fit_text(model, phases, train, val, out, backend, pad_token_id=tokenizer.pad_token_id,
                         batch_size=batch_size, seed=seed, teacher=teacher, label=label, progress=progress,
                         config={"recipe": self.config.model_dump(), "role": label, "seed": seed})
        return model, time.perf_counter() - start

    saved: tuple[tuple[str, str], ...] = ()
    """(arm, sub-run folder prefix) of the models a run saves as ``<prefix>-seed<seed>/model``."""

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Ambiguity metrics of the models a finished run saved (``kd-nlu eval RUN``), reloaded with AutoModel."""
        from kd_core.errors import RunDirError
        from transformers import AutoModelForSequenceClassification

        c = self.config
        folders = {(arm, seed): Path(run) / f"{prefix}-seed{seed}" / "model" for arm, prefix in self.saved
                   for seed in c.seeds}
        missing = [str(f) for f in folders.values() if not (f / "config.json").is_file()]
        if missing:
            raise RunDirError("RUN", "a finished run with every seed's saved model", f"missing {missing}")
        backend = Backend(device=device)
        splits = self._splits()
        _, tokenizer = self._model(c.seeds[0], splits["train"].num_labels)
        test = splits["test"].dataset(tokenizer, c.data.max_length)
        scores: dict[str, float] = {}
        for (arm, seed), folder in folders.items():
            model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
            metrics = evaluate(model.to(backend.device), test, splits["test"], tokenizer.pad_token_id)
            scores.update({f"{arm}/seed{seed}/{k}": float(metrics[k])
                           for k in ("accuracy", "jsd", "kl", "ece", "confidence_wrong", "params")})
        return scores

    @staticmethod
    def _table(results: dict[str, dict[str, dict[str, float]]]) -> str:
        rows = []
        for arm, by_seed in results.items():
            runs = list(by_seed.values())
            row: dict[str, Any] = {"model": arm}
            for key, scale, digits in (("accuracy", 100, 2), ("ece", 100, 2), ("jsd", 1, 4), ("kl", 1, 4),
                                       ("confidence_wrong", 1, 3), ("mean_confidence", 1, 3)):
                row[key] = format_mean_std([r[key] for r in runs], digits=digits, scale=scale)
            row["params"] = int(runs[0]["params"])
            if "train_seconds" in runs[0]:
                row["train s"] = format_mean_std([r["train_seconds"] for r in runs], digits=1)
            rows.append(row)
        return markdown_table(rows)

    @staticmethod
    def _mean(results: dict[str, dict[str, dict[str, float]]], arm: str, key: str) -> float:
        values = [r[key] for r in results[arm].values()]
        return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------------------
# S1: self-knowledge distillation from a lower layer, then re-calibration


class SelfKDConfig(Strict):
    """Phase 1: the lower layer ℓ (1-based, strictly below the top), λ, τ, the lower head's pooling and its own
    learning rate ``head_lr`` (a probe on detached features barely moves at a fine-tuning rate).

    Mean pooling by default: MiniLM-L6 (a sentence-transformers model trained with mean pooling) carries
    almost nothing in its lower layers' [CLS] vector (on VADER, [CLS] probes of layers 1-3 only reach the
    majority-class rate), so a [CLS] lower head distils a constant prior.
    """

    layer: Annotated[int, Field(ge=1)] = 2
    lam: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 1.0
    pooling: Literal["cls", "mean"] = "mean"
    head_lr: Annotated[float, Field(gt=0)] = 1e-3


class RecalibrationConfig(Strict):
    """Phase 2: which samples are flagged (rule, fraction q) and how long the classifier re-calibrates."""

    enabled: bool = True
    rule: Literal["entropy", "margin", "disagreement"] = "entropy"
    quantile: Annotated[float, Field(ge=0, le=1)] = 0.3
    temperature: Annotated[float, Field(gt=0)] = 1.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0
    train: TrainConfig = TrainConfig(epochs=3, lr=2e-5)


class SelfKDRecipe(RecipeConfig):
    """The ``ambiguity-selfkd`` recipe (S1)."""

    method: Literal["ambiguity-selfkd"] = "ambiguity-selfkd"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig(epochs=4, lr=5e-5)
    selfkd: SelfKDConfig = SelfKDConfig()
    recalibration: RecalibrationConfig = RecalibrationConfig()
    baseline: bool = True
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])


def selfkd_objective(lam: float, temperature: float = 1.0) -> Objective:
    """``(1−λ)·CE(y, p_L) + CE(y, p_ℓ) + λ·KL(sg[p_ℓ] ‖ p_L)`` over a ``SelfDistillModel``'s taps."""
    if not 0 <= lam <= 1:
        raise ConfigError("lam", "λ in [0, 1]", lam)
    return Objective(
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - lam),
        Term("lower_ce", cross_entropy, student="lower_head", target="label", weight=1.0),
        Term("self_kd", lower_layer_kl, student="pair", weight=lam, temperature=temperature),
    )


class SelfKDPlan(_AmbiguityPlan):
    """Per seed: CE baseline (optional), self-KD, then re-calibration of the flagged samples; then a report."""

    title = "Self-knowledge distillation for learning ambiguity (S1)"
    saved = (("self-KD final", "selfkd"),)

    def run(self, context: RunContext) -> Path:
        """Train every arm over every seed, evaluate on the test split and write the report."""
        c = self.config
        backend = Backend(device=context.device, precision=context.precision)
        splits = self._splits()
        num_labels = splits["train"].num_labels
        probe_model, _ = self._model(c.seeds[0], num_labels)  # the layer must exist: fail before writing anything
        check_layer(c.selfkd.layer, len(layer_paths(probe_model)), "selfkd.layer", below_top=True)
        del probe_model
        top = self._open(context, backend)
        results: dict[str, dict[str, dict[str, float]]] = {}
        flags: dict[str, float] = {}
        with progress_bar() as progress:
            for seed in c.seeds:
                self._seed(seed, splits, num_labels, top.path, backend, progress, results, flags)
        top.write_json("results.json", {"arms": results, "flagged_fraction": flags})
        self._report(top, results, flags, context)
        return top.path

    def _seed(self, seed: int, splits, num_labels: int, root: Path, backend: Backend, progress,
              results: dict, flags: dict) -> None:
        c = self.config
        model, tokenizer = self._model(seed, num_labels)
        data = {name: task.dataset(tokenizer, c.data.max_length) for name, task in splits.items()}
        pad = tokenizer.pad_token_id
        if c.baseline:
            base, seconds = self._fit(model, single_phase(supervised_objective(), c.train, "ce"),
                                      data["train"], data["val"], root / f"ce-seed{seed}", backend, tokenizer, seed,
                                      c.train.batch_size, f"CE s{seed}", progress)
            results.setdefault("CE fine-tuning", {})[str(seed)] = evaluate(
                base, data["test"], splits["test"], pad, extra={"train_seconds": seconds})
            model, tokenizer = self._model(seed, num_labels)
        student = SelfDistillModel(model, c.selfkd.layer, num_labels, c.selfkd.pooling)
        student, seconds = self._fit(
            student, [Phase("selfkd", selfkd_objective(c.selfkd.lam, c.selfkd.temperature), epochs=c.train.epochs,
                            optimizer=head_lr_adamw(student.lower_head, c.train.lr, c.selfkd.head_lr,
                                                    c.train.weight_decay), scheduler=cosine_lr)],
            data["train"], data["val"], root / f"selfkd-seed{seed}", backend, tokenizer, seed, c.train.batch_size,
            f"self-KD s{seed}", progress)
        inference_params = {"params": count_parameters(student.model)}
        results.setdefault("self-KD", {})[str(seed)] = evaluate(
            student, data["test"], splits["test"], pad, extra={"train_seconds": seconds, **inference_params})
        results.setdefault(f"lower head (layer {c.selfkd.layer})", {})[str(seed)] = evaluate(
            student, data["test"], splits["test"], pad, tap="lower_head", extra=inference_params)
        if c.recalibration.enabled:
            student, recal_seconds, fraction = self._recalibrate(student, data["train"], splits["train"], root, seed,
                                                                 backend, tokenizer, progress)
            flags[str(seed)] = fraction
            results.setdefault("self-KD + re-calibration", {})[str(seed)] = evaluate(
                student, data["test"], splits["test"], pad,
                extra={"train_seconds": seconds + recal_seconds, **inference_params})
        student.model.save_pretrained(root / f"selfkd-seed{seed}" / "model")

    def _recalibrate(self, student: SelfDistillModel, train, train_task: AmbiguityTask, root: Path, seed: int,
                     backend: Backend, tokenizer, progress) -> tuple[SelfDistillModel, float, float]:
        r = self.config.recalibration
        lower = predict_logits(student, train, tokenizer.pad_token_id, tap="lower_head")
        mask = flag_ambiguous(torch.softmax(lower.double(), -1), r.quantile, r.rule, train_task.labels)
        fraction = float(mask.double().mean())
        console.print(f"seed {seed}: re-calibrating {int(mask.sum())} of {len(mask)} training samples "
                      f"({100 * fraction:.1f}%, rule {r.rule})")
        if not bool(mask.any()):
            return student, 0.0, 0.0
        for p in student.lower_head.parameters():  # the target distribution stays fixed
            p.requires_grad_(False)
        flagged = TargetsDataset(train, lower, mask.nonzero().squeeze(-1))
        student, seconds = self._fit(student, single_phase(recalibration_objective(r.temperature, r.ce_weight),
                                                           r.train, "recalibrate"),
                                     flagged, None, root / f"recalibrate-seed{seed}", backend, tokenizer, seed,
                                     r.train.batch_size, f"re-calibrate s{seed}", progress)
        return student, seconds, fraction

    def _report(self, top: RunDir, results: dict, flags: dict, context: RunContext) -> Path:
        c = self.config
        lines = []
        final = "self-KD + re-calibration" if "self-KD + re-calibration" in results else "self-KD"
        if "CE fine-tuning" in results:
            for key, better in (("jsd", "lower"), ("confidence_wrong", "lower"), ("accuracy", "higher")):
                base, ours = self._mean(results, "CE fine-tuning", key), self._mean(results, final, key)
                held = ours < base if better == "lower" else ours >= base
                lines.append(f"- {key}: CE {base:.4f} → {final} {ours:.4f} ({better} is better: "
                             f"{'direction held' if held else 'direction NOT held'})")
        if "self-KD + re-calibration" in results:
            before, after = (self._mean(results, "self-KD", "confidence_wrong"),
                             self._mean(results, "self-KD + re-calibration", "confidence_wrong"))
            lines.append(f"- re-calibration moves confidence on wrong predictions {before:.3f} → {after:.3f}; "
                         f"flagged fraction per seed: {flags}")
        summary = (f"Data: {c.data.source}, {c.data.train_size} train / {c.data.val_size} val / {c.data.test_size} "
                   f"test, gold = majority label (seeded ties), scored against the human distributions. "
                   f"Self-KD: layer {c.selfkd.layer}, λ = {c.selfkd.lam}, τ = {c.selfkd.temperature}, "
                   f"{c.train.epochs} epochs at lr {c.train.lr}. Re-calibration: rule {c.recalibration.rule}, "
                   f"q = {c.recalibration.quantile}, {c.recalibration.train.epochs} epochs at lr "
                   f"{c.recalibration.train.lr}, "
                   f"CE floor {c.recalibration.ce_weight}. JSD is the Jensen–Shannon distance (log base 2), KL is "
                   f"KL(human ‖ model) in nats; mean ± std over seeds {c.seeds}.\n\n" + "\n".join(lines) + "\n")
        jsd_png = plot_bars({arm: self._mean(results, arm, "jsd") for arm in results}, top.plots / "jsd.png",
                            title="JSD to human distributions (test)", ylabel="JSD (base 2)")
        return write_report(top, self.title, [
            ("Summary", summary), ("Results (test split)", self._table(results)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}.\n")],
            plots=[("JSD to the human distributions", jsd_png)])


# ---------------------------------------------------------------------------------------------------------
# S2: probe, find the plateau, prune above it, distil the lower layer into the pruned model


class ProbeConfig(Strict):
    """Per-layer linear probes on frozen features, and the plateau tolerance ε (a fraction of accuracy).

    Mean pooling by default (the paper probes [CLS]; MiniLM's lower-layer [CLS] is uninformative, see
    ``SelfKDConfig``); ``pooling: cls`` gives the paper's probes.
    """

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


class PruneRecipe(RecipeConfig):
    """The ``ambiguity-prune`` recipe (S2)."""

    method: Literal["ambiguity-prune"] = "ambiguity-prune"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    finetune: TrainConfig = TrainConfig(epochs=4, lr=5e-5)
    probes: ProbeConfig = ProbeConfig()
    distill: PruneDistillConfig = PruneDistillConfig()
    compare_pruned_ce: bool = True
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])


def prune_distill_objective(lam: float, temperature: float = 1.0) -> Objective:
    """``(1−λ)·CE(y, p) + λ·τ²·KL(p_{ℓ_d}^τ ‖ p^τ)``, the teacher being the lower-layer probe."""
    if not 0 <= lam <= 1:
        raise ConfigError("lam", "λ in [0, 1]", lam)
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=lam, temperature=temperature,
             direction="forward"),
        Term("ce", cross_entropy, student="logits", target="label", weight=1.0 - lam),
    )


class PrunePlan(_AmbiguityPlan):
    """Per seed: fine-tune, probe, find ℓ*, prune, distil from layer ℓ_d (and a CE-only pruned twin); report."""

    title = "Layer pruning helps models capture ambiguity (S2)"
    saved = (("pruned + lower-layer KD", "pruned-kd"),)

    def run(self, context: RunContext) -> Path:
        """Train every arm over every seed, evaluate on the test split and write the report."""
        backend = Backend(device=context.device, precision=context.precision)
        splits = self._splits()
        top = self._open(context, backend)
        results: dict[str, dict[str, dict[str, float]]] = {}
        layers: dict[str, dict[str, Any]] = {}
        with progress_bar() as progress:
            for seed in self.config.seeds:
                layers[str(seed)] = self._seed(seed, splits, top.path, backend, progress, results)
        top.write_json("results.json", {"arms": results, "layers": layers})
        self._report(top, results, layers, context)
        return top.path

    def _probe(self, full: nn.Module, data, splits, root: Path, seed: int, pad: int, backend: Backend,
               progress) -> tuple[ProbeBank, dict[str, Any]]:
        p = self.config.probes
        collate = TextCollator(pad)
        device = next(full.parameters()).device
        features = {name: layer_features(full, data[name], collate, p.pooling, device=device)
                    for name in ("train", "val", "test")}
        n_layers, hidden = features["train"].shape[1:]
        bank = ProbeBank(n_layers, hidden, splits["train"].num_labels, p.pooling)
        train_probes(bank, FeatureDataset(features["train"], splits["train"].labels), root / f"probes-seed{seed}",
                     epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed, backend=backend)
        val_logits, test_logits = probe_logits(bank, features["val"]), probe_logits(bank, features["test"])
        curve = {"val_accuracy": layer_accuracies(val_logits, splits["val"].labels),
                 "test_jsd": [score(test_logits[:, i], splits["test"])["jsd"] for i in range(n_layers)]}
        curve["plateau"] = plateau_layer(curve["val_accuracy"], p.tolerance)
        curve["distill_from"] = distillation_layer(curve["plateau"], self.config.distill.offset)
        return bank, curve

    def _seed(self, seed: int, splits, root: Path, backend: Backend, progress, results: dict) -> dict[str, Any]:
        c = self.config
        full, tokenizer = self._model(seed, splits["train"].num_labels)
        pad = tokenizer.pad_token_id
        data = {name: task.dataset(tokenizer, c.data.max_length) for name, task in splits.items()}
        full, seconds = self._fit(full, single_phase(supervised_objective(), c.finetune, "finetune"),
                                  data["train"], data["val"], root / f"finetune-seed{seed}", backend, tokenizer, seed,
                                  c.finetune.batch_size, f"fine-tune s{seed}", progress)
        results.setdefault("full model, CE", {})[str(seed)] = evaluate(full, data["test"], splits["test"], pad,
                                                                       extra={"train_seconds": seconds})
        bank, curve = self._probe(full, data, splits, root, seed, pad, backend, progress)
        plateau, source = curve["plateau"], curve["distill_from"]
        console.print(f"seed {seed}: probe val accuracy {[round(a, 4) for a in curve['val_accuracy']]}, "
                      f"plateau at layer {plateau}, distilling from layer {source}")
        teacher = LayerClassifier(prune_layers(full, source), source, bank.heads[source - 1]).to(backend.device)
        results.setdefault("lower-layer probe (teacher)", {})[str(seed)] = evaluate(
            teacher, data["test"], splits["test"], pad)
        student, kd_seconds = self._fit(
            prune_layers(full, plateau),
            single_phase(prune_distill_objective(c.distill.lam, c.distill.temperature), c.distill.train, "distill"),
            data["train"], data["val"], root / f"pruned-kd-seed{seed}", backend, tokenizer, seed,
            c.distill.train.batch_size, f"pruned KD s{seed}", progress, teacher=teacher)
        results.setdefault("pruned + lower-layer KD", {})[str(seed)] = evaluate(
            student, data["test"], splits["test"], pad, extra={"train_seconds": seconds + kd_seconds})
        student.save_pretrained(root / f"pruned-kd-seed{seed}" / "model")
        if c.compare_pruned_ce:
            twin, ce_seconds = self._fit(
                prune_layers(full, plateau), single_phase(supervised_objective(), c.distill.train, "ce"),
                data["train"], data["val"], root / f"pruned-ce-seed{seed}", backend, tokenizer, seed,
                c.distill.train.batch_size, f"pruned CE s{seed}", progress)
            results.setdefault("pruned, CE only", {})[str(seed)] = evaluate(
                twin, data["test"], splits["test"], pad, extra={"train_seconds": seconds + ce_seconds})
        return curve

    def _report(self, top: RunDir, results: dict, layers: dict, context: RunContext) -> Path:
        c = self.config
        seed0 = str(c.seeds[0])
        curve = layers[seed0]
        layer_rows = [{"layer": i + 1, "val accuracy %": 100 * a, "test JSD": j}
                      for i, (a, j) in enumerate(zip(curve["val_accuracy"], curve["test_jsd"]))]
        base, ours = self._mean(results, "full model, CE", "jsd"), self._mean(results, "pruned + lower-layer KD", "jsd")
        acc_drop = 100 * (self._mean(results, "full model, CE", "accuracy")
                          - self._mean(results, "pruned + lower-layer KD", "accuracy"))
        jsd_falls = curve["test_jsd"][0] < curve["test_jsd"][-1]
        summary = (f"Data: {c.data.source}, {c.data.train_size} train / {c.data.val_size} val / {c.data.test_size} "
                   f"test, gold = majority label (seeded ties), scored against the human distributions. Plateau "
                   f"(ε = {c.probes.tolerance}) per seed: "
                   f"{ {s: v['plateau'] for s, v in layers.items()} }; distilled from layer(s) "
                   f"{ {s: v['distill_from'] for s, v in layers.items()} }; λ = {c.distill.lam}, "
                   f"τ = {c.distill.temperature}. JSD is the Jensen–Shannon distance (log base 2), KL is "
                   f"KL(human ‖ model) in nats; mean ± std over seeds {c.seeds}.\n\n"
                   f"- pruned + KD vs full CE: JSD {base:.4f} → {ours:.4f} "
                   f"({'direction held' if ours < base else 'direction NOT held'}), accuracy change "
                   f"{-acc_drop:+.2f} points\n"
                   f"- seed {seed0}: layer-1 probe JSD {curve['test_jsd'][0]:.4f} vs top-layer probe "
                   f"{curve['test_jsd'][-1]:.4f} "
                   f"({'lower layers better' if jsd_falls else 'lower layers NOT better'})\n")
        fig_path = self._curve_plot(top, curve, seed0)
        return write_report(top, self.title, [
            ("Summary", summary), ("Results (test split)", self._table(results)),
            (f"Per-layer probes (seed {seed0})", markdown_table(layer_rows, digits=4)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}.\n")],
            plots=[(f"Per-layer probes (seed {seed0})", fig_path)])

    @staticmethod
    def _curve_plot(top: RunDir, curve: dict[str, Any], seed: str) -> Path:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        x = list(range(1, len(curve["val_accuracy"]) + 1))
        ax.plot(x, curve["val_accuracy"], marker="o", label="val accuracy")
        ax.plot(x, curve["test_jsd"], marker="s", label="test JSD")
        ax.axvline(curve["plateau"], color="grey", linestyle="--", label="plateau ℓ*")
        ax.set_xlabel("layer")
        ax.set_title(f"Per-layer probes (seed {seed})")
        ax.legend()
        return save_figure(fig, top.plots / "layers.png")


def build_selfkd(config: SelfKDRecipe) -> SelfKDPlan:
    """The plan for a validated ``ambiguity-selfkd`` config."""
    return SelfKDPlan(config)


def build_prune(config: PruneRecipe) -> PrunePlan:
    """The plan for a validated ``ambiguity-prune`` config."""
    return PrunePlan(config)


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SELFKD_METHOD = Method(name="ambiguity-selfkd", config_model=SelfKDRecipe, build=build_selfkd, domain="nlu",
                       recipes=_RECIPES, summary="S1: lower-layer self-distillation + re-calibration of ambiguous "
                                                 "samples (VADER human distributions)")
PRUNE_METHOD = Method(name="ambiguity-prune", config_model=PruneRecipe, build=build_prune, domain="nlu",
                      recipes=_RECIPES, summary="S2: per-layer probes, prune above the accuracy plateau, distil "
                                                "the lower layer (VADER human distributions)")
