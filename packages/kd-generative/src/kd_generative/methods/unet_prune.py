"""Cut Inner Layers: structured pruning of a Pix2Pix U-Net where it costs least, against global pruning.

B.-K. Kim, S. Choi and H. Park, "Cut Inner Layers: A Structured Pruning Strategy for Efficient U-Net GANs",
arXiv:2206.14658, 2022. Pruning one layer at a time shows a U-shaped sensitivity over layer index: the layers near
the bottleneck can lose most of their filters. Hence (1) a per-layer sensitivity scan, (2) pruning 50–75 % of the
filters of several innermost encoder and decoder layers at once, (3) cutting the innermost levels away entirely, each
followed by fine-tuning, and (4) the baseline, global L1 filter pruning (filters ranked across layers) at the same
parameter count. The paper reports several times fewer parameters at about unchanged quality, beating global pruning.

Here the unpruned generator is the task's Pix2Pix teacher (trained here with L1 + cGAN and cached, as for
``pix2pix-compact``), and every pruned copy of it is fine-tuned by KD from it, without a discriminator:

    L = λ_rec·‖G_s(x) − y‖₁ + λ_out·‖G_s(x) − G_t(x)‖₁.

Arms (paired: a seed gives every arm the same data order; each starts from its pruned copy of the teacher):

- ``inner`` (variant): ``inner.ratio`` of the filters of the innermost ``inner.levels`` levels, L1;
- ``cut`` (variant): the innermost ``cut.levels`` levels removed, the removed branch's mean folded into a bias,
  measured on ``cut.calibration`` train inputs;
- ``global`` (baseline): global L1 filter pruning at the ``inner`` arm's parameter count (within
  ``global_pruning.tolerance``), or at ``global_pruning.params_fraction`` of the teacher's;
- ``uniform`` (baseline, optional): every layer pruned by one ratio, at the same count.

Before the arms, the teacher's sensitivity scan (each layer alone, ratios ``sensitivity.ratios``, no fine-tuning)
goes into the report with its inner/outer ratio. The pruning itself is kd-edge's, reached through the
``kd.unet_pruning`` plugins (``kd_core.unet_pruning``): without kd-edge, building the study fails before any data
or training, with "pip install kd-edge". Headline metric: ``headline`` (default the Fréchet distance, the paper's
FID stand-in; the toolkit's own feature network, not Inception).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

from kd_core.engine import Phase
from kd_core.errors import ConfigError
from kd_core.losses import l1
from kd_core.objective import Objective, Term
from kd_core.recipes import RunContext, Section
from kd_core.report import markdown_table
from kd_core.structure import unet_structure
from kd_core.study import Arm, Role
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from kd_core.unet_pruning import CUT, GLOBAL, INNER, SENSITIVITY, unet_pruning
from pydantic import Field, field_validator, model_validator

from kd_generative.methods.pix2pix import adam, pix2pix_lr, reconstruction_term
from kd_generative.methods.study_common import check_arms, latest_task
from kd_generative.methods.unet_prune_report import pruning_rows, sensitivity_section
from kd_generative.methods.unet_prune_students import PrunedStudents
from kd_generative.models.unet import unet_widths
from kd_generative.tasks import GanConfig, PairedData, TeacherConfig, image_task

__all__ = ["ARMS", "HEADLINES", "UNET_GLOBAL", "UNET_INNER", "CutConfig", "FinetuneConfig", "GlobalConfig",
           "InnerConfig", "SensitivityConfig", "UNetGlobalConfig", "UNetInnerConfig", "UNetPruneConfig", "arms",
           "check_config", "compare", "needed_plugins", "task"]

ARMS = ("inner", "cut", "global", "uniform")
ROLES: dict[str, Role] = {"inner": "variant", "cut": "variant", "global": "baseline", "uniform": "baseline"}
#: Headline metric -> whether higher is better.
HEADLINES = {"frechet": False, "psnr": True, "ssim": True, "perceptual": False}
_MATCHED = ("global", "uniform")


class InnerConfig(Section):
    """The ``inner`` arm: ``ratio`` of the filters of every layer of the innermost ``levels`` levels (also the levels
    the sensitivity ratio calls inner)."""

    ratio: Annotated[float, Field(gt=0, lt=1)] = 0.75
    levels: Annotated[int, Field(ge=1)] = 3


class CutConfig(Section):
    """The ``cut`` arm: the innermost ``levels`` levels removed; the fold's mean measured on the first
    ``calibration`` train inputs."""

    levels: Annotated[int, Field(ge=1)] = 2
    calibration: Annotated[int, Field(ge=2)] = 64


class GlobalConfig(Section):
    """The ``global``/``uniform`` arms' size: ``params_fraction`` of the teacher's parameters, or (None) the
    ``inner`` arm's count; reached within ``tolerance`` (relative)."""

    params_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    tolerance: Annotated[float, Field(gt=0, le=0.1)] = 0.02


class SensitivityConfig(Section):
    """The teacher's per-layer scan: on or off, the ratios, the score (``l1``: mean |output − teacher output|;
    ``frechet``: Fréchet distance to the teacher's images) and how many val inputs it uses."""

    enabled: bool = True
    ratios: Annotated[list[Annotated[float, Field(gt=0, lt=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0.5, 0.75])
    score: Literal["l1", "frechet"] = "l1"
    inputs: Annotated[int, Field(ge=2)] = 32


class FinetuneConfig(Section):
    """The KD fine-tune of every pruned student: ``epochs`` of Adam ``lr`` (β1 0.5, held for half then linear to
    0) in batches of ``batch_size``; loss weights ``rec`` (L1 to the target) and ``output`` (L1 to the teacher)."""

    epochs: Annotated[int, Field(ge=1)] = 20
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(ge=1)] = 16
    rec: Annotated[float, Field(ge=0)] = 1.0
    output: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="after")
    def _some_loss(self) -> FinetuneConfig:
        if self.rec == 0 and self.output == 0:
            raise ValueError(f"rec or output > 0 (a loss to fine-tune with), received {[self.rec, self.output]!r}")
        return self


class MetricsConfig(Section):
    """``feature_steps``: training steps of the metric feature network (perceptual and Fréchet distances; trained
    once, cached); ``grid_rows``: test images shown in the report's grid."""

    feature_steps: Annotated[int, Field(ge=1)] = 200
    grid_rows: Annotated[int, Field(ge=1, le=32)] = 6


class UNetPruneConfig(StudyRecipe):
    """What the ``unet-inner`` and ``unet-global`` recipes share (see the module doc). ``teacher`` and ``gan``
    describe the Pix2Pix teacher (trained once and cached, shared with ``pix2pix-compact`` for the same settings)."""

    data: PairedData = PairedData()
    teacher: TeacherConfig = TeacherConfig()
    gan: GanConfig = GanConfig()
    inner: InnerConfig = InnerConfig()
    cut: CutConfig = CutConfig()
    global_pruning: GlobalConfig = GlobalConfig()
    sensitivity: SensitivityConfig = SensitivityConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    metrics: MetricsConfig = MetricsConfig()
    headline: Literal["frechet", "psnr", "ssim", "perceptual"] = "frechet"
    arms: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["inner", "cut", "global"])

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        return check_arms(value, ARMS)


class UNetInnerConfig(UNetPruneConfig):
    """The ``unet-inner`` recipe: inner pruning and cutting against global pruning at the same size."""

    method: Literal["unet-inner"] = "unet-inner"


class UNetGlobalConfig(UNetPruneConfig):
    """The ``unet-global`` recipe: global L1 filter pruning alone, to a fraction of the teacher's parameters."""

    method: Literal["unet-global"] = "unet-global"
    arms: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["global"])
    global_pruning: GlobalConfig = GlobalConfig(params_fraction=0.14)
    sensitivity: SensitivityConfig = SensitivityConfig(enabled=False)


def check_config(config: UNetPruneConfig) -> None:
    """Refuse settings that no U-Net of ``teacher.depth`` allows (a ``ConfigError`` naming the field), before any
    data or training: inner levels (when used) must leave the outermost level alone, and a cut must leave at least
    one level."""
    depth = config.teacher.depth
    uses_inner = {INNER, SENSITIVITY} & set(needed_plugins(config))  # the scan's inner/outer ratio reads it too
    if uses_inner and config.inner.levels > depth - 1:
        raise ConfigError("inner.levels", f"an integer in [1, {depth - 1}] (fewer than teacher.depth = {depth}: the "
                          "outermost level is not inner)", config.inner.levels)
    if "cut" in config.arms and config.cut.levels > depth - 1:
        raise ConfigError("cut.levels", f"an integer in [1, {depth - 1}] (at least one of teacher.depth = {depth} "
                          "levels must remain)", config.cut.levels)


def needed_plugins(config: UNetPruneConfig) -> list[str]:
    """The ``kd.unet_pruning`` plugins the recipe's arms and scan use."""
    arms = set(config.arms)
    matched_to_inner = bool(arms & set(_MATCHED)) and config.global_pruning.params_fraction is None
    wanted = {SENSITIVITY: config.sensitivity.enabled, INNER: "inner" in arms or matched_to_inner,
              CUT: "cut" in arms, GLOBAL: bool(arms & set(_MATCHED))}
    return [name for name, used in wanted.items() if used]


def _settings(config: UNetPruneConfig) -> dict[str, dict[str, Any]]:
    """Each pruned model's settings: the arms', and the inner one when global pruning is matched to it."""
    g = config.global_pruning
    matched = {"params_fraction": g.params_fraction, "tolerance": g.tolerance}
    every = {"inner": config.inner.model_dump(), "cut": config.cut.model_dump(), "global": matched,
             "uniform": matched}
    wanted = ["inner"] if INNER in needed_plugins(config) else []
    return {arm: every[arm] for arm in dict.fromkeys([*wanted, *config.arms])}


def task(config: UNetPruneConfig, context: RunContext) -> Task:
    """The image-to-image task of the recipe, with the recipe's headline and its ``PrunedStudents`` in
    ``extras["unet_pruning"]`` (``latest_task``: the report and ``eval`` reuse it and its teacher). Settings and the
    pruning plugins are checked first, before any data is built."""
    check_config(config)
    plugins = unet_pruning(needed_plugins(config), argument=f"arms {config.arms} of {config.method}")

    def build() -> Task:
        t = config.teacher
        base = image_task(config.data, t, unet_widths(t.depth, t.base, t.max_mult), config.gan,
                          device=context.device, feature_steps=config.metrics.feature_steps,
                          reuse_teacher=config.reuse_teacher)
        built = dataclasses.replace(base, headline=config.headline, higher_is_better=HEADLINES[config.headline],
                                    student_field="arms")
        sensitivity = config.sensitivity.model_dump() if config.sensitivity.enabled else None
        built.extras["unet_pruning"] = PrunedStudents(built, plugins, _settings(config), sensitivity=sensitivity)
        return built

    return latest_task(config, context, build)


def _pruning(config: UNetPruneConfig, arm: str) -> str:
    """How ``arm``'s student is pruned, in words."""
    depth, g = config.teacher.depth, config.global_pruning
    size = (f"{g.params_fraction:.1%} of the teacher's parameters" if g.params_fraction is not None
            else "the inner arm's parameter count")
    return {"inner": f"{config.inner.ratio:.0%} of the filters of the innermost {config.inner.levels} of {depth} "
                     "levels pruned (L1)",
            "cut": f"innermost {config.cut.levels} of {depth} levels cut, branch mean folded into a bias",
            "global": f"global L1 filter pruning to {size}",
            "uniform": f"uniform L1 filter pruning (one ratio for every layer) to {size}"}[arm]


def arms(config: UNetPruneConfig, task: Task) -> dict[str, Arm]:
    """The arms ``config.arms`` names (see the module doc), each fine-tuning its pruned copy of the teacher."""
    prepared: PrunedStudents = task.extras["unet_pruning"]
    f = config.finetune

    def phases() -> list[Phase]:
        objective = Objective(reconstruction_term(f.rec),
                              Term("out", l1, student="logits", teacher="logits", weight=f.output))
        return [Phase("finetune", objective, epochs=f.epochs, optimizer=adam(f.lr), scheduler=pix2pix_lr)]

    def student(arm: str) -> Any:
        return lambda seed: prepared.student(arm)

    return {name: Arm(phases, role=ROLES[name], student=student(name), batch_size=f.batch_size,
                      description=f"{_pruning(config, name)}; KD fine-tune: λ_rec·L1(y) + λ_out·L1(teacher)")
            for name in config.arms}


def compare(config: UNetPruneConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Inner pruning and the cut against global pruning (and against uniform pruning, when it runs)."""
    pairs = [("inner", "global"), ("cut", "global"), ("inner", "uniform"), ("cut", "uniform")]
    return [p for p in pairs if set(p) <= set(arms)]


def notes(config: UNetPruneConfig, task: Task) -> str:
    """The settings behind the numbers."""
    t, f = config.teacher, config.finetune
    pruned = "; ".join(f"{arm}: {_pruning(config, arm)}" for arm in config.arms)
    return (f"Teacher (the unpruned generator): Pix2Pix U-Net depth {t.depth}, widths {task.extras['teacher_widths']}"
            + (f", weights {t.weights}. " if t.weights else
               f", L1 + cGAN (λ_L1 = {t.lambda_l1:g}), {t.epochs} epochs. ")
            + f"Pruned students: {pruned}; every seed of an arm starts from the same pruned weights (seeds differ in "
            f"data order and dropout). Every one fine-tuned {f.epochs} epochs by KD from the "
            f"teacher (rec {f.rec:g}·L1(y) + output {f.output:g}·L1(teacher), no discriminator), Adam lr {f.lr:g} "
            f"(β1 0.5), batch {f.batch_size}. Headline: {config.headline} on the test split. Perceptual and "
            "Fréchet distances use the toolkit's own feature network (not LPIPS/FID); `_teacher` columns compare "
            "with the teacher's images.")


def _sections(config: UNetPruneConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    from kd_generative.report import image_sections

    built = task(config, RunContext(out=run))
    prepared: PrunedStudents = built.extras["unet_pruning"]
    sections: list[tuple[str, str]] = []
    scan = prepared.scan()
    if scan:
        text, kept = sensitivity_section(scan, unet_structure(prepared.teacher()), config.inner.levels,
                                         config.sensitivity.score, Path(run))
        results["sensitivity"] = kept
        sections.append(("Sensitivity scan (teacher)", text))
    summaries = {arm: prepared.summary(arm) for arm in config.arms}
    results["pruning"] = summaries
    reference = "inner" if config.global_pruning.params_fraction is None and "inner" in summaries else None
    sections.append(("Pruned students", "Parameters and MACs of each fine-tuned student (one forward pass of one "
                     "test image), how many times fewer than the teacher's, and what its pruning step did."
                     + (" Global pruning is matched to the inner arm's parameter count." if reference else "")
                     + "\n\n" + markdown_table(pruning_rows(results, summaries, reference))))
    images = image_sections(built, config.arms, config.seeds, results, run, rows=config.metrics.grid_rows,
                            students={arm: (lambda a=arm: prepared.student(a)) for arm in config.arms})
    pruned = "each arm's fine-tuned pruned student"
    return sections + [(heading, text.replace("each arm's student", pruned) if heading == "Samples" else text)
                       for heading, text in images]


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"

UNET_INNER = study_method(
    "unet-inner", UNetInnerConfig, task=task, arms=arms, teacher_training=lambda c: None,
    title=lambda c, t: f"Cut Inner Layers: inner pruning and cutting vs global pruning of a Pix2Pix U-Net, on "
                       f"{t.description}",
    notes=notes, compare=compare, sections=_sections, domain="generative", recipes=_RECIPES,
    summary="Cut Inner Layers (arXiv:2206.14658): prune or cut a U-Net's inner levels vs global L1 pruning, KD "
            "fine-tuned")

UNET_GLOBAL = study_method(
    "unet-global", UNetGlobalConfig, task=task, arms=arms, teacher_training=lambda c: None,
    title=lambda c, t: f"Global L1 filter pruning of a Pix2Pix U-Net, KD fine-tuned, on {t.description}",
    notes=notes, compare=compare, sections=_sections, domain="generative", recipes=_RECIPES,
    summary="Global L1 filter pruning of a Pix2Pix U-Net to a parameter fraction, KD fine-tuned (arXiv:2206.14658)")
