"""Data-free KD by model inversion: ``natural-inversion`` and its baseline ``deep-inversion`` as arms of a Study.

Kim, Park, Kim and Kim, "NaturalInversion: Data-Free Image Synthesis Improving Real-World Consistency",
AAAI 2022, arXiv:2306.16661; Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via
DeepInversion", CVPR 2020, arXiv:1912.08795. The synthesis (losses, priors, generator, FTP, ACS) lives in
``kd_vision.inversion``; this module is the config and the arms. Every KD arm minimises the same
T²·KL(p_T^τ ‖ p_S^τ) (+ ``ce_weight``·CE on the targets) from the same student initialisation per seed; only
the transfer set differs:

- ``natural-inversion``: images from a fresh generator per batch with the Feature Transfer Pyramid and
  Adaptive Channel Scaling; ``generator-only``: the same without FTP and ACS (the paper's ablation);
- ``deep-inversion``: pixels optimised directly (Adam);
- ``real-kd``: the real train images, the upper bound data-free KD approaches; ``scratch``: CE on them.

The synthetic sets are cached per arm and seed in the study's directory (``synthetic/``, keyed by the
settings that make them, with PNG grids in ``plots/``). Besides the task's metrics, each KD student's
results hold its transfer set's feature Fréchet distance to the real test images in the teacher's
penultimate space (``fd_transfer_vs_test``), the teacher's accuracy on it and, for synthetic sets, the mean
best synthesis loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Objective, Term
from kd_core.engine import Phase
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import classification_metrics
from kd_core.recipes import Method, RunContext
from kd_core.signals import Forward, FrozenTeacher
from kd_core.study import Arm, ArmRun, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task, classification_outputs
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_vision.inversion import (
    DeepInversion,
    NaturalInversion,
    PriorWeights,
    SyntheticImages,
    frechet_distance,
    penultimate_features,
    require_batchnorm,
    synthesize,
)
from kd_vision.inversion.grid import plot_image_grid
from kd_vision.methods.common import Strict, TrainConfig
from kd_vision.tasks import VisionData, vision_task

ArmName = Literal["natural-inversion", "generator-only", "deep-inversion", "real-kd", "scratch"]
INVERSIONS = ("natural-inversion", "generator-only", "deep-inversion")
#: The attribute a KD arm's student carries its transfer-set metrics in (read by ``evaluator``).
TRANSFER_METRICS = "transfer_metrics"


class SynthesisConfig(Strict):
    """What every inversion shares: images, iterations, prior weights and jitter (NaturalInversion's CIFAR-10
    weights; ±2 px with flips; 20 images per class in one batch of 200 and 400 iterations, a CPU-sized setting:
    the paper uses batches of 256 and 2000 iterations)."""

    images_per_class: Annotated[int, Field(gt=0)] = 20
    batch_size: Annotated[int, Field(ge=2)] = 200
    iterations: Annotated[int, Field(gt=0)] = 400
    w_bn: Annotated[float, Field(ge=0)] = 10.0
    w_tv: Annotated[float, Field(ge=0)] = 6e-3
    w_l2: Annotated[float, Field(ge=0)] = 1.5e-5
    jitter: Annotated[int, Field(ge=0)] = 2
    flip: bool = True


class DeepConfig(Strict):
    """DeepInversion: Adam on the pixels at ``lr``."""

    lr: Annotated[float, Field(gt=0)] = 0.05


class NaturalConfig(Strict):
    """NaturalInversion: Adam learning rates of the generator, FTP and ACS, and the generator's size.
    ``ftp_taps`` names the teacher maps of the pyramid (shallowest first); None: the last BatchNorm output at
    each spatial resolution."""

    lr_generator: Annotated[float, Field(gt=0)] = 1e-3
    lr_ftp: Annotated[float, Field(gt=0)] = 5e-4
    lr_acs: Annotated[float, Field(gt=0)] = 5e-2
    latent_dim: Annotated[int, Field(gt=0)] = 1024
    generator_width: Annotated[int, Field(ge=2)] = 128
    ftp_taps: Annotated[list[str], Field(min_length=1)] | None = None


class KDConfig(Strict):
    """T²·KL at ``temperature`` plus ``ce_weight``·CE on the labels (the synthesis targets)."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0


class InversionConfig(StudyRecipe):
    """The ``natural-inversion`` and ``deep-inversion`` recipes (the method names the arm under test)."""

    method: Literal["natural-inversion", "deep-inversion"] = "natural-inversion"
    data: VisionData = VisionData(source="sklearn8x8", train_size=1000, val_size=200, test_size=500)
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=30, lr=1e-2)
    synthesis: SynthesisConfig = SynthesisConfig()
    deep: DeepConfig = DeepConfig()
    natural: NaturalConfig = NaturalConfig()
    kd: KDConfig = KDConfig()
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["natural-inversion", "deep-inversion", "real-kd"])
    penultimate_tap: str = "in:fc"

    @model_validator(mode="after")
    def _arms_are_consistent(self) -> InversionConfig:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, received {self.arms}")
        if self.method not in self.arms:
            raise ValueError(f"arms must include the method's own arm {self.method!r}, received {self.arms}")
        return self


def inversion_for(config: InversionConfig, arm: str) -> NaturalInversion | DeepInversion:
    """The synthesis of one inversion arm."""
    s = config.synthesis
    common = {"iterations": s.iterations, "weights": PriorWeights(bn=s.w_bn, tv=s.w_tv, l2=s.w_l2),
              "jitter": s.jitter, "flip": s.flip}
    if arm == "deep-inversion":
        return DeepInversion(lr=config.deep.lr, **common)
    n, full = config.natural, arm == "natural-inversion"
    return NaturalInversion(lr_generator=n.lr_generator, lr_ftp=n.lr_ftp, lr_acs=n.lr_acs, latent_dim=n.latent_dim,
                            generator_width=n.generator_width, use_ftp=full, use_acs=full, ftp_taps=n.ftp_taps,
                            name=arm, **common)


def kd_objective(kd: KDConfig) -> Objective:
    """T²·KL(teacher ‖ student) at ``kd.temperature`` (+ ``kd.ce_weight``·CE on the labels)."""
    terms = [Term("kd", kl_divergence, student="logits", teacher="logits", temperature=kd.temperature,
                  direction="forward")]
    if kd.ce_weight > 0:
        terms.append(Term("ce", cross_entropy, student="logits", target="label", weight=kd.ce_weight))
    return Objective(*terms)


def _stack(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))  # type: ignore[arg-type]
    return batch["input"], batch["label"]


def transfer_metrics(teacher: nn.Module, transfer: Dataset, test: Dataset, tap: str) -> dict[str, float]:
    """FD between the teacher's ``tap`` features of ``transfer`` and of ``test``, and the teacher's accuracy on
    ``transfer``'s labels."""
    images, labels = _stack(transfer)
    real, _ = _stack(test)
    with torch.no_grad():
        device = next(teacher.parameters()).device
        logits = torch.cat([teacher.eval()(images[i:i + 256].to(device)).float().cpu()
                            for i in range(0, len(images), 256)])
    return {"fd_transfer_vs_test": frechet_distance(penultimate_features(teacher, images, tap),
                                                    penultimate_features(teacher, real, tap)),
            "teacher_accuracy_on_transfer": float((logits.argmax(-1) == labels).float().mean())}


def synthetic_set(config: InversionConfig, arm: str, run: ArmRun) -> SyntheticImages:
    """The arm's synthetic images for ``run.seed``: read from the study's ``synthetic/`` folder when one made
    with the same settings is there, else synthesised from the teacher and saved (with a PNG grid)."""
    task, top = run.study.task, run.out.parent
    shape = tuple(int(s) for s in task.example_input().shape[1:])
    s, method = config.synthesis, inversion_for(config, arm)
    key = {"settings": method.settings(), "seed": run.seed, "images_per_class": s.images_per_class,
           "batch_size": s.batch_size, "shape": shape, "classes": len(task.class_names or [])}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = top / "synthetic" / f"{arm}-seed{run.seed}-{digest}.safetensors"
    if path.is_file():
        return SyntheticImages.load(path)
    assert run.teacher is not None  # an inversion arm always gets the study's teacher
    images = synthesize(method, run.teacher, num_classes=len(task.class_names or []), image_shape=shape,
                        images_per_class=s.images_per_class, batch_size=s.batch_size, seed=run.seed,
                        progress=run.study.progress, label=f"{arm} s{run.seed}")
    images.save(path)
    plot_image_grid(images.images, images.labels, top / "plots" / f"synthetic-{arm}-seed{run.seed}.png",
                    title=f"{arm}, seed {run.seed}")
    return images


def distil_fit(config: InversionConfig, arm: str) -> Callable[[ArmRun], nn.Module]:
    """``Arm.fit`` of a KD arm: its transfer set (synthetic, or the real train split for ``real-kd``), then
    KD on it through the study's ``Distiller``; the student carries its transfer-set metrics."""
    def fit(run: ArmRun) -> nn.Module:
        task = run.study.task
        assert run.teacher is not None
        extra: dict[str, float] = {}
        if arm == "real-kd":
            transfer: Dataset = task.data.train
        else:
            transfer = synthetic_set(config, arm, run)
            losses = transfer.provenance.get("batch_losses") or [float("nan")]
            extra["synthesis_loss"] = float(sum(losses) / len(losses))
        distiller = run.distiller(config.student.train_spec().phases(kd_objective(config.kd)),
                                  FrozenTeacher(run.teacher))
        distiller.fit(transfer, task.data.val, out=run.out, config=run.config(),
                      resume=run.resume and (run.out / "config.yaml").is_file())
        student = distiller.student
        setattr(student, TRANSFER_METRICS,
                {**transfer_metrics(run.teacher, transfer, task.data.test, config.penultimate_tap), **extra})
        return student
    return fit


def evaluator(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier score, plus the transfer-set metrics a KD student carries."""
    return {**classification_metrics(*classification_outputs(model, batches, forward)),
            **getattr(model, TRANSFER_METRICS, {})}


def arms(config: InversionConfig, task: Task | None) -> dict[str, Arm]:
    """Every arm the recipe lists: the method's own is the variant, real-data KD the ``kd`` arm (an upper
    bound), the other inversions baselines."""
    def phases() -> list[Phase]:
        return config.student.train_spec().phases(kd_objective(config.kd))

    train = config.student.train_spec()
    built = {}
    for name in config.arms:
        if name == "scratch":
            built[name] = Arm(lambda: supervised_phases(train), role="scratch", batch_size=train.batch_size,
                              description="cross-entropy on the real train labels")
            continue
        role = "kd" if name == "real-kd" else "variant" if name == config.method else "baseline"
        what = ("the real train images" if name == "real-kd" else
                f"{config.synthesis.images_per_class} synthetic images per class ({name})")
        built[name] = Arm(phases, role=role, batch_size=train.batch_size, fit=distil_fit(config, name),
                          description=f"T²·KL at T = {config.kd.temperature} on {what}")
    return built


def compare(config: InversionConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Real-data KD vs scratch; the method against the other inversions; generator-only vs DeepInversion (the
    paper's order is NI > generator-only > DI); then the gap from real-data KD down to the method."""
    own = config.method
    pairs = [("real-kd", "scratch")] if {"real-kd", "scratch"} <= set(arms) else []
    pairs += [(own, b) for b in INVERSIONS if b != own and b in arms]
    if own == "natural-inversion" and {"generator-only", "deep-inversion"} <= set(arms):
        pairs.append(("generator-only", "deep-inversion"))
    return pairs + ([("real-kd", own)] if "real-kd" in arms else [])


def task(config: InversionConfig, context: RunContext) -> Task:
    """The vision task of ``data``/``teacher``/``student``, with the teacher checked for BatchNorm (the prior
    needs it) before anything runs, and the evaluator that adds the transfer-set metrics."""
    base = vision_task(config.data, config.teacher, config.student, context)
    if any(a in INVERSIONS for a in config.arms):
        require_batchnorm(base.teacher(), "teacher.model")
    return dataclasses.replace(base, evaluator=evaluator)


def notes(config: InversionConfig, task: Task) -> str:
    """The synthesis and KD settings behind the numbers."""
    s, n, st = config.synthesis, config.natural, config.student
    return (f"Synthesis: {s.images_per_class} images per class in batches of {s.batch_size}, {s.iterations} "
            f"iterations per batch, loss CE + {s.w_bn}·BN + {s.w_tv}·TV + {s.w_l2}·L2, jitter ±{s.jitter} px"
            f"{' with flips' if s.flip else ', no flips'}; NaturalInversion: a fresh generator per batch (latent "
            f"{n.latent_dim}, width {n.generator_width}, Adam lr {n.lr_generator}), FTP (lr {n.lr_ftp}) and ACS "
            f"(α ~ N(5, 1), lr {n.lr_acs}); generator-only: neither; DeepInversion: pixels, Adam lr "
            f"{config.deep.lr}. KD: {st.model}, {st.epochs} epochs, AdamW lr {st.lr}, batch {st.batch_size}, "
            f"T = {config.kd.temperature}, CE weight {config.kd.ce_weight}; the inversion students never see a "
            f"real train image (the real val split is only watched, never used to pick a checkpoint). "
            f"results.json also holds per student the Fréchet distance of its transfer set to the real test "
            f"images in the teacher's `{config.penultimate_tap}` space (fd_transfer_vs_test; real-kd's is the "
            f"real-vs-real floor) and the teacher's accuracy on it. Synthetic sets in `synthetic/`, grids in "
            f"`plots/synthetic-*.png`.")


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
_NAMES = {"natural-inversion": "NaturalInversion", "deep-inversion": "DeepInversion"}


def _method(name: str, summary: str) -> Method:
    return study_method(name, InversionConfig, task=task, arms=arms, compare=compare, notes=notes,
                        teacher_training=lambda c: c.teacher.train_spec(),
                        title=lambda c, t: f"{_NAMES[c.method]}: data-free KD on {t.description}",
                        domain="vision", recipes=_RECIPES, summary=summary)


NATURAL_INVERSION = _method("natural-inversion", "NaturalInversion data-free KD (generator + FTP + ACS) vs "
                                                 "DeepInversion vs KD on real data")
DEEP_INVERSION = _method("deep-inversion", "DeepInversion data-free KD: pixel-space synthesis, KD on it, vs KD on "
                                           "real data")
