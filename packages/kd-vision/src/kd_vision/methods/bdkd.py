"""BD-KD: online distillation that balances forward and reverse KL per sample, with DML and a fixed mix.

Amara, Sepahvand, Meyer, Gross and Clark, "BD-KD: Balancing the Divergences for Online Knowledge
Distillation", arXiv:2212.12965 (v1, 2022). Teacher and student are trained together from scratch. The
paper fixes the structure; the sigmoid weights and their sharpness k are our reading of its entropy-gap rule:

- student: CE(y, p_S) + λ_S·τ²·(1/B)·Σᵢ [aᵢ·KL(p_Tⁱ ‖ p_Sⁱ) + bᵢ·KL(p_Sⁱ ‖ p_Tⁱ)], with the detached entropy
  gap Δᵢ = H(p_Sⁱ) − H(p_Tⁱ), bᵢ = σ(k·Δᵢ), aᵢ = 1 − bᵢ (``kd_core.losses.balanced_kl``): an unsure student
  leans on the mode-seeking reverse KL, an over-confident one on the mass-covering forward KL;
- teacher (v1's loss; v2 of the paper also changes it): DML's CE(y, p_T) + λ_T·τ²·KL(p_S ‖ p_T) against the
  detached student.

The controls of the small experiment are recipes of this module: ``dml`` (the student's term is
forward KL alone; Zhang et al., "Deep Mutual Learning", arXiv:1706.00384) and ``fixed-mix-kd`` (forward and
reverse KL at a fixed 0.5/0.5). Every plan also trains the same student from the same initialisation
with CE alone. Training runs through ``Distiller`` with a ``TrainableTeacher``; the data are digits whose
train labels carry symmetric noise (``kd_vision.data.noise``). The experiment's MLPs (64-512-512-10
teacher, 64-12-10 student) are not in ``kd_vision.models``; ``build_net`` builds ``mlp-<w1>-<w2>...`` here
and any other name through ``kd_vision.models.build_model``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Objective, Phase, Term, adamw
from kd_core.engine import classification_evaluator
from kd_core.errors import ConfigError
from kd_core.losses import balanced_kl, cross_entropy, kl_divergence
from kd_core.metrics import CalibrationResult, count_parameters, format_mean_std, mean_std
from kd_core.plots import plot_loss_curves, plot_reliability_diagram
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.signals import TrainableTeacher
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_vision import models
from kd_vision.data.digits import make_splits
from kd_vision.data.noise import NoisyLabels
from kd_vision.methods.common import Strict, calibration, fit, open_run

Variant = Literal["ce", "dml", "fixed-mix-kd", "bd-kd"]
VARIANTS: tuple[str, ...] = ("ce", "dml", "fixed-mix-kd", "bd-kd")
#: How reports name each variant (the letters of the small experiment).
LABELS: dict[str, str] = {"ce": "A · student CE only", "dml": "B · DML", "fixed-mix-kd": "C · fixed 0.5/0.5 mix",
                          "bd-kd": "D · BD-KD"}
_MLP = re.compile(r"mlp-([1-9]\d*(?:-[1-9]\d*)*)")


# -- models ------------------------------------------------------------------------------------------
def check_model_name(name: str) -> str:
    """Return ``name`` if ``build_net`` knows it (``mlp-<widths>`` or a ``build_model`` name), else raise."""
    if not isinstance(name, str) or not (_MLP.fullmatch(name) or name in models.MODELS or name.startswith("tv:")):
        known = sorted(models.MODELS)
        raise ConfigError("model", f"'mlp-<hidden widths>' (e.g. 'mlp-512-512'), 'tv:<torchvision name>' or one of "
                                   f"{known}", name)
    return name


def build_net(name: str, input_shape: Sequence[int], num_classes: int = 10) -> nn.Module:
    """``mlp-512-512``: Flatten, Linear(in, 512), ReLU, Linear(512, 512), ReLU, Linear(512, C).

    Any other name goes to ``kd_vision.models.build_model``. ``input_shape`` is one sample's input shape.
    """
    check_model_name(name)
    match = _MLP.fullmatch(name)
    if match is None:
        return models.build_model(name, num_classes=num_classes)
    widths = [math.prod(input_shape), *(int(w) for w in match.group(1).split("-"))]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))


# -- config ------------------------------------------------------------------------------------------
class DataConfig(Strict):
    """Digits, split sizes and the symmetric label-noise rate applied to the train split only."""

    source: Literal["mnist5k", "sklearn8x8"] = "sklearn8x8"
    train_size: Annotated[int, Field(gt=0)] = 1000
    val_size: Annotated[int, Field(ge=0)] = 200
    test_size: Annotated[int, Field(gt=0)] = 597
    noise_rate: Annotated[float, Field(ge=0, lt=1)] = 0.2


class NetConfig(Strict):
    """One network: its name (``mlp-<widths>`` or a ``build_model`` name) and its AdamW settings."""

    model: str
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            return check_model_name(value)
        except ConfigError as err:
            raise ValueError(f"expected {err.expected}") from None


class OnlineKDConfig(Strict):
    """τ, the KD weights λ_S (student) and λ_T (teacher), BD-KD's sharpness k and the fixed mix's reverse share."""

    temperature: Annotated[float, Field(gt=0)] = 1.0
    student_weight: Annotated[float, Field(ge=0)] = 1.0
    teacher_weight: Annotated[float, Field(ge=0)] = 1.0
    sharpness: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    reverse_share: Annotated[float, Field(ge=0, le=1)] = 0.5


class BDKDConfig(RecipeConfig):
    """The ``bd-kd``, ``dml`` and ``fixed-mix-kd`` recipes: the method, plus the ``baselines`` run beside it."""

    method: Literal["bd-kd", "dml", "fixed-mix-kd"] = "bd-kd"
    data: DataConfig = DataConfig()
    teacher: NetConfig = NetConfig(model="mlp-512-512")
    student: NetConfig = NetConfig(model="mlp-12")
    kd: OnlineKDConfig = OnlineKDConfig()
    epochs: Annotated[int, Field(gt=0)] = 80
    batch_size: Annotated[int, Field(gt=0)] = 64
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4])
    baselines: list[Variant] = Field(default_factory=lambda: ["ce"])

    @model_validator(mode="after")
    def _distinct_seeds_and_variants(self) -> BDKDConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, received {self.seeds}")
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines must be distinct, received {self.baselines}")
        return self

    @property
    def variants(self) -> list[str]:
        """Every variant this plan trains, in the order A, B, C, D."""
        chosen = {*self.baselines, self.method}
        return [v for v in VARIANTS if v in chosen]


# -- objectives --------------------------------------------------------------------------------------
def check_sharpness(sharpness: Any) -> float:
    """Return BD-KD's sharpness k as a float, or raise ``ConfigError`` unless it is a finite number ≥ 0."""
    if isinstance(sharpness, bool) or not isinstance(sharpness, int | float) or not math.isfinite(sharpness) \
            or sharpness < 0:
        raise ConfigError("sharpness", "a finite number >= 0 (k in b = sigmoid(k * entropy gap))", sharpness)
    return float(sharpness)


def student_objective(variant: str, kd: OnlineKDConfig) -> Objective:
    """The student's loss: CE, plus λ_S·τ²·(forward KL | fixed mix | balanced KL) for the online variants."""
    check_sharpness(kd.sharpness)
    ce = Term("ce", cross_entropy, student="logits", target="label")
    tau, weight = kd.temperature, kd.student_weight
    if variant == "ce":
        return Objective(ce)
    if variant == "dml":
        return Objective(ce, Term("kd_forward", kl_divergence, teacher="logits", weight=weight,
                                  temperature=tau, direction="forward"))
    if variant == "fixed-mix-kd":
        share = kd.reverse_share
        return Objective(ce,
                         Term("kd_forward", kl_divergence, teacher="logits", weight=weight * (1 - share),
                              temperature=tau, direction="forward"),
                         Term("kd_reverse", kl_divergence, teacher="logits", weight=weight * share,
                              temperature=tau, direction="reverse"))
    if variant == "bd-kd":
        return Objective(ce, Term("kd_balanced", balanced_kl, teacher="logits", weight=weight,
                                  temperature=tau, sharpness=kd.sharpness))
    raise ConfigError("variant", f"one of {list(VARIANTS)}", variant)


def teacher_objective(kd: OnlineKDConfig) -> Objective:
    """The co-trained teacher's loss (v1, DML): CE(y, p_T) + λ_T·τ²·KL(p_S ‖ p_T).

    A ``TrainableTeacher`` objective sees the teacher's outputs as "student" and the detached student's as
    "teacher", so the forward direction here is KL(p_S ‖ p_T).
    """
    return Objective(Term("ce", cross_entropy, student="logits", target="label"),
                     Term("mutual_kl", kl_divergence, teacher="logits", weight=kd.teacher_weight,
                          temperature=kd.temperature, direction="forward"))


# -- the plan ----------------------------------------------------------------------------------------
class InMemory(Dataset):
    """A dataset's items read once and stacked (digits are tiny): per-step loading then costs one index."""

    def __init__(self, dataset: Dataset) -> None:
        items = [dataset[i] for i in range(len(dataset))]
        self.columns = {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in items[0]}
        self.flipped = getattr(dataset, "flipped", None)

    def __len__(self) -> int:
        """The number of items."""
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th item, as the wrapped dataset gave it."""
        return {key: column[index] for key, column in self.columns.items()}


def _score(model: nn.Module, loader: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Accuracy, NLL, ECE (15 bins over the whole split: logits are concatenated first) and Brier."""
    return classification_evaluator(model, loader, lambda m, b: m(b["input"]))


def summarise(per_seed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of student accuracy/ECE/NLL and teacher accuracy/ECE (when there is one)."""
    runs = list(per_seed.values())
    out: dict[str, Any] = {}
    for role in ("student", "teacher"):
        if runs[0].get(role) is None:
            continue
        for metric in ("accuracy", "ece", "nll"):
            out[f"{role}_{metric}"] = list(mean_std([r[role][metric] for r in runs]))
    return out


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """One table row per variant of a ``results.json``: mean ± std over seeds, in percent where it applies."""
    rows = []
    for variant in results["variants"]:
        runs = list(results["seeds"][variant].values())
        teacher = [r["teacher"] for r in runs if r["teacher"] is not None]
        rows.append({
            "variant": LABELS[variant],
            "student acc %": format_mean_std([100 * r["student"]["accuracy"] for r in runs]),
            "student ECE %": format_mean_std([100 * r["student"]["ece"] for r in runs]),
            "student NLL": format_mean_std([r["student"]["nll"] for r in runs], digits=3),
            "teacher acc %": format_mean_std([100 * t["accuracy"] for t in teacher]) if teacher else "—",
            "teacher ECE %": format_mean_std([100 * t["ece"] for t in teacher]) if teacher else "—"})
    return rows


def expected_direction(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """A plain sentence on the expected direction: D lowest student ECE, accuracy ≥ B, teacher ≥ B."""
    if "bd-kd" not in summary or "dml" not in summary:
        return "The spec's expected direction compares BD-KD (D) with DML (B); run both to check it."
    d, b = summary["bd-kd"], summary["dml"]
    others = {v: s["student_ece"][0] for v, s in summary.items() if v != "bd-kd"}
    lowest = all(d["student_ece"][0] < e for e in others.values())
    acc_ok = d["student_accuracy"][0] >= b["student_accuracy"][0]
    teacher_ok = d["teacher_accuracy"][0] >= b["teacher_accuracy"][0]
    held = lowest and acc_ok and teacher_ok
    best_other = min(others, key=others.get)
    parts = [
        f"D {'has' if lowest else 'does not have'} the lowest mean student ECE "
        f"({100 * d['student_ece'][0]:.2f}% vs {100 * others[best_other]:.2f}% for {LABELS[best_other]})",
        f"its mean student accuracy is {'≥' if acc_ok else '<'} B's "
        f"({100 * d['student_accuracy'][0]:.2f}% vs {100 * b['student_accuracy'][0]:.2f}%)",
        f"its teacher is {'not worse than' if teacher_ok else 'worse than'} B's "
        f"({100 * d['teacher_accuracy'][0]:.2f}% vs {100 * b['teacher_accuracy'][0]:.2f}%)",
    ]
    close = [name for name, (x, y) in {
        f"D vs {LABELS[best_other]} ECE": (d["student_ece"], summary[best_other]["student_ece"]),
        "D vs B student accuracy": (d["student_accuracy"], b["student_accuracy"]),
        "D vs B teacher accuracy": (d["teacher_accuracy"], b["teacher_accuracy"])}.items()
        if abs(x[0] - y[0]) < max(x[1], y[1])]
    noise = f" Within one seed-std (not resolved by this many seeds): {', '.join(close)}." if close else ""
    return (f"The spec's expected direction **{'held' if held else 'did not hold'}** (comparing means over seeds): "
            + "; ".join(parts) + "." + noise)


class BDKDPlan:
    """For every seed: the CE-only student and each online variant, then a report with mean ± std over seeds."""

    def __init__(self, config: BDKDConfig) -> None:
        self.config = config

    def splits(self, seed: int) -> dict[str, Dataset]:
        """Fixed clean val/test splits and the train split with noise drawn from ``seed``."""
        c = self.config.data
        base = make_splits(c.source, train_size=c.train_size, val_size=c.val_size, test_size=c.test_size, seed=0)
        splits: dict[str, Dataset] = {"train": InMemory(NoisyLabels(base["train"], c.noise_rate, seed=seed)),
                                      "test": InMemory(base["test"])}
        if c.val_size:
            splits["val"] = InMemory(base["val"])
        return splits

    def _net(self, which: NetConfig, input_shape: Sequence[int], seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_net(which.model, input_shape)

    def train_variant(self, variant: str, seed: int, splits: Mapping[str, Dataset], out: Path, backend: Backend,
                      progress: Any = None, resume: bool = False) -> tuple[nn.Module, nn.Module | None]:
        """Train one variant for one seed in ``out``; return (student, co-trained teacher or None)."""
        c = self.config
        shape = tuple(splits["train"][0]["input"].shape)
        student = self._net(c.student, shape, seed)  # the same initialisation for every variant of a seed
        phases = [Phase("online" if variant != "ce" else "train", student_objective(variant, c.kd),
                        epochs=c.epochs, optimizer=adamw(c.student.lr, c.student.weight_decay))]
        signal = None
        if variant != "ce":
            teacher = self._net(c.teacher, shape, 10_000 + seed)
            signal = TrainableTeacher(teacher, teacher_objective(c.kd),
                                      optimizer=adamw(c.teacher.lr, c.teacher.weight_decay))
        config = {"recipe": c.model_dump(), "variant": variant, "seed": seed}
        trained = fit(student, phases, splits, out, backend, f"{variant} s{seed}", progress, seed=seed,
                      batch_size=c.batch_size, config=config, teacher=signal, resume=resume)
        return trained, (signal.model if signal is not None else None)

    def run(self, context: RunContext) -> Path:
        """Train every variant over every seed, evaluate on the clean test split and write the report."""
        c = self.config
        check_sharpness(c.kd.sharpness)
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, c.model_dump(), c.seeds[0], backend)
        results: dict[str, Any] = {"method": c.method, "variants": c.variants, "seeds": {v: {} for v in c.variants}}
        calib: dict[str, CalibrationResult] = {}
        with progress_bar() as progress:
            for seed in c.seeds:
                splits = self.splits(seed)
                loader = [backend.to_device(b) for b in DataLoader(splits["test"], batch_size=512)]
                for variant in c.variants:
                    student, teacher = self.train_variant(variant, seed, splits, top.path / f"{variant}-seed{seed}",
                                                          backend, progress, context.resume)
                    results["seeds"][variant][str(seed)] = {
                        "student": _score(student, loader), "teacher": _score(teacher, loader) if teacher else None}
                    if seed == c.seeds[0]:
                        calib[f"{LABELS[variant]} student"] = calibration(student, loader)
                        if teacher is not None and variant == c.method:
                            calib[f"{LABELS[variant]} teacher"] = calibration(teacher, loader)
                        results.setdefault("params", {"student": count_parameters(student)})
                        if teacher is not None:
                            results["params"]["teacher"] = count_parameters(teacher)
        console.print("writing the report")
        results["summary"] = {v: summarise(results["seeds"][v]) for v in c.variants}
        results["verdict"] = expected_direction(results["summary"])
        results["calibration"] = {name: value.__dict__ for name, value in calib.items()}
        results["noise"] = {"rate": c.data.noise_rate, "flipped": len(self.splits(c.seeds[0])["train"].flipped)}
        top.write_json("results.json", results)
        self._report(top, results, calib, context)
        return top.path

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Clean-test accuracy and ECE of every variant's final student in a finished run."""
        from kd_core.checkpoint import load_weights

        c, backend = self.config, Backend(device=device)
        scores: dict[str, float] = {}
        for seed in c.seeds:
            splits = self.splits(seed)
            loader = [backend.to_device(b) for b in DataLoader(splits["test"], batch_size=512)]
            shape = tuple(splits["train"][0]["input"].shape)
            for variant in c.variants:
                student = load_weights(self._net(c.student, shape, seed),
                                       Path(run) / f"{variant}-seed{seed}" / "checkpoints" / "final.safetensors")
                metrics = _score(student.to(backend.device), loader)
                scores[f"{variant}/seed{seed}/accuracy"] = metrics["accuracy"]
                scores[f"{variant}/seed{seed}/ece"] = metrics["ece"]
        return scores

    def _report(self, top: RunDir, results: dict[str, Any], calib: dict[str, CalibrationResult],
                context: RunContext) -> Path:
        c = self.config
        rows = summary_rows(results)
        per_seed = [{"variant": LABELS[v], "seed": s, "student acc %": 100 * r["student"]["accuracy"],
                     "student ECE %": 100 * r["student"]["ece"],
                     "teacher acc %": 100 * r["teacher"]["accuracy"] if r["teacher"] else "—"}
                    for v in c.variants for s, r in results["seeds"][v].items()]
        setting = (f"Data: {c.data.source} digits, {c.data.train_size} train samples with "
                   f"{100 * c.data.noise_rate:.0f}% symmetric label noise ({results['noise']['flipped']} labels "
                   f"flipped for seed {c.seeds[0]}; the noise is redrawn per seed), {c.data.test_size} clean test "
                   f"samples. Student `{c.student.model}` ({results['params']['student']:,} parameters), teacher "
                   f"`{c.teacher.model}` ({results['params'].get('teacher', 0):,} parameters), both from scratch, "
                   f"trained together for {c.epochs} epochs (AdamW, constant lr: student {c.student.lr}, teacher "
                   f"{c.teacher.lr}), batch {c.batch_size}. τ = {c.kd.temperature}, λ_S = {c.kd.student_weight}, "
                   f"λ_T = {c.kd.teacher_weight}, k = {c.kd.sharpness}. Each model is its last epoch; ECE uses 15 "
                   f"equal-width bins over the whole test split. Mean ± std over seeds {c.seeds}.\n")
        curves = []
        seed0 = str(c.seeds[0])
        sub = RunDir(top.path / f"{c.method}-seed{seed0}")
        for record in sub.metrics():
            if "loss/total" in record:
                curves.append({**record, "run": c.method})
        reliability = plot_reliability_diagram(calib, top.plots / "reliability.png")
        plots = [(f"Reliability diagrams (seed {seed0})", reliability)]
        if curves:
            plots.append((f"Training loss of {c.method}: student and teacher (seed {seed0})",
                          plot_loss_curves(curves, top.plots / "loss_curves.png",
                                           keys=["loss/total", "teacher_loss/total"])))
        return write_report(top, f"{LABELS[c.method]} on noisy digits (online KD)", [
            ("Summary", results["verdict"] + "\n\n" + setting),
            ("Results (clean test split)", markdown_table(rows)),
            ("Per seed", markdown_table(per_seed, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: {context.precision}. "
                          "Resolved recipe in `config.yaml`.\n"),
        ], plots=plots)


def build(config: BDKDConfig) -> BDKDPlan:
    """The plan for a validated ``bd-kd``/``dml``/``fixed-mix-kd`` config."""
    return BDKDPlan(config)


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
METHOD = Method(name="bd-kd", config_model=BDKDConfig, build=build, domain="vision", recipes=_RECIPES,
                summary="BD-KD: online KD with entropy-gap-balanced forward/reverse KL, noisy digits, vs CE student")
DML_METHOD = Method(name="dml", config_model=BDKDConfig, build=build, domain="vision", recipes=_RECIPES,
                    summary="Deep Mutual Learning (online KD, forward KL) on noisy digits, vs CE student")
FIXED_MIX_METHOD = Method(name="fixed-mix-kd", config_model=BDKDConfig, build=build, domain="vision",
                          recipes=_RECIPES,
                          summary="Online KD, fixed 0.5/0.5 forward+reverse KL mix, noisy digits (BD-KD control)")
