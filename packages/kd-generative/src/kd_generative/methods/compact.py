"""Compact Pix2Pix students distilled without a discriminator.

The students are Pix2Pix U-Nets (Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017) of the teacher's depth whose widths are cut to about a quarter. They are
trained as the compression framework of Kim, Kang, Seo, Park, Choi, Song, Kim and Lim trains its compact
Wav2Lip ("A Unified Compression Framework for Efficient Speech-Driven Talking-Face Generation", arXiv:2304.00471,
MLSys 2023 workshop on on-device intelligence): knowledge distillation **without adversarial learning**,

    L = λ_rec·‖G_s(x) − y‖₁ + λ_out·‖G_s(x) − G_t(x)‖₁ + λ_feat·Σ_j ‖φ_j(F_s^j) − F_t^j‖₁,

with φ_j a learned 1×1 convolution from the student's channels to the teacher's, on matched U-Net taps. The
λ's are not published; as the spec suggests, all start at 1. Arms, on the same student, initialisation and
data order for a seed:

- ``kd``: the loss above (the paper's method, no discriminator);
- ``scratch``: ``λ_rec·L1`` to the target alone;
- ``scratch-gan``: plain Pix2Pix, ``λ_rec·L1 + λ_gan·cGAN`` (PatchGAN discriminator);
- ``kd-gan``: the ``kd`` loss plus ``λ_gan·cGAN``.

λ_gan defaults to 0.01 = 1/100, Pix2Pix's ratio of the cGAN term to its L1 term (λ_L1 = 100) relative to the
unit L1 weight here. The teacher is a full-width U-Net trained here with Pix2Pix's own loss (L1 + cGAN,
λ_L1 = 100) and cached (``kd_generative.tasks``). Optimisers are Adam (β1 = 0.5), with the learning rate held
for half of training and then decayed linearly to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from kd_core.engine import Phase
from kd_core.losses import l1
from kd_core.objective import Objective, Term
from kd_core.recipes import RunContext, Section
from kd_core.signals import FrozenTeacher
from kd_core.study import Arm, ArmRun
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field, field_validator
from torch import nn

from kd_generative.methods.features import ProjectedL1, decoder_taps, tap_channels
from kd_generative.methods.pix2pix import adam, adversarial_term, discriminator_signal, pix2pix_lr, reconstruction_term
from kd_generative.methods.study_common import check_arms, latest_task
from kd_generative.tasks import GanConfig, PairedData, TeacherConfig, check_geometry, image_task

__all__ = ["ARMS", "METHOD", "CompactConfig", "LossConfig", "StudentConfig", "arms", "kd_terms", "student_widths",
           "task"]

ARMS = ("kd", "scratch", "scratch-gan", "kd-gan")
_GAN_ARMS = ("scratch-gan", "kd-gan")


class StudentConfig(Section):
    """The compact student: the teacher's widths divided by ``width_divisor`` (at least 1 channel), the same
    depth; trained ``epochs`` with Adam ``lr`` (β1 0.5) in batches of ``batch_size``. ``dropout``: None keeps
    the teacher's."""

    width_divisor: Annotated[float, Field(ge=1)] = 4.0
    epochs: Annotated[int, Field(ge=1)] = 20
    lr: Annotated[float, Field(gt=0)] = 2e-4
    batch_size: Annotated[int, Field(ge=1)] = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None


class LossConfig(Section):
    """The loss weights: ``rec`` (L1 to the target), ``output`` (L1 to the teacher's image), ``feature`` (each
    projected feature L1), ``gan`` (the cGAN term of the GAN arms). ``feature_taps``: U-Net module paths matched
    between teacher and student (default: the decoder's BatchNorm outputs ``up.1.2`` … ``up.{depth-1}.2``)."""

    rec: Annotated[float, Field(ge=0)] = 1.0
    output: Annotated[float, Field(ge=0)] = 1.0
    feature: Annotated[float, Field(ge=0)] = 1.0
    gan: Annotated[float, Field(ge=0)] = 0.01
    feature_taps: list[str] | None = None


class MetricsConfig(Section):
    """``feature_steps``: training steps of the metric feature network (perceptual and Fréchet distances; trained
    once, cached); ``grid_rows``: test images shown in the report's grid."""

    feature_steps: Annotated[int, Field(ge=1)] = 200
    grid_rows: Annotated[int, Field(ge=1, le=32)] = 6


class CompactConfig(StudyRecipe):
    """The ``pix2pix-compact`` recipe."""

    method: Literal["pix2pix-compact"] = "pix2pix-compact"
    data: PairedData = PairedData()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    loss: LossConfig = LossConfig()
    gan: GanConfig = GanConfig()
    metrics: MetricsConfig = MetricsConfig()
    arms: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: list(ARMS))

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        return check_arms(value, ARMS)


def student_widths(config: CompactConfig) -> list[int]:
    """The teacher's widths divided by ``student.width_divisor``, rounded, at least 1."""
    from kd_generative.models.unet import unet_widths

    t = config.teacher
    return [max(1, round(w / config.student.width_divisor)) for w in unet_widths(t.depth, t.base, t.max_mult)]


def task(config: CompactConfig, context: RunContext) -> Task:
    """The image-to-image task of the recipe (``latest_task``: the report and ``eval`` reuse it, and its
    teacher)."""
    def build() -> Task:
        if any(a in _GAN_ARMS for a in config.arms):
            check_geometry(config.data.size, config.teacher.depth, config.gan)
        return image_task(config.data, config.teacher, student_widths(config), config.gan, device=context.device,
                          feature_steps=config.metrics.feature_steps, reuse_teacher=config.reuse_teacher,
                          student_dropout=config.student.dropout)

    return latest_task(config, context, build)


def kd_terms(loss: LossConfig, channels: dict[str, tuple[int, int]]) -> list[Term]:
    """The ``kd`` arm's terms: L1 to the target, L1 to the teacher's image, and one projected feature L1 per tap
    (``channels``: tap -> (student channels, teacher channels))."""
    return [reconstruction_term(loss.rec),
            Term("out", l1, student="logits", teacher="logits", weight=loss.output),
            *(Term(f"feat.{tap}", ProjectedL1(s, t), student=tap, teacher=tap, weight=loss.feature)
              for tap, (s, t) in channels.items())]


def _feature_channels(config: CompactConfig, task: Task) -> dict[str, tuple[int, int]]:
    taps = config.loss.feature_taps if config.loss.feature_taps is not None else decoder_taps(config.teacher.depth)
    if not taps or config.loss.feature == 0:
        return {}
    batch = task.example_batch(2)
    student = tap_channels(task.student(0), taps, batch)
    teacher = tap_channels(task.extras["build_teacher"](), taps, batch)
    return {tap: (student[tap], teacher[tap]) for tap in taps}


def arms(config: CompactConfig, task: Task) -> dict[str, Arm]:
    """The arms ``config.arms`` names (see the module doc), all on the task's compact student."""
    s, loss = config.student, config.loss
    channels = _feature_channels(config, task) if {"kd", "kd-gan"} & set(config.arms) else {}

    def phases(*terms: Term) -> list[Phase]:
        return [Phase("train", Objective(*terms), epochs=s.epochs, optimizer=adam(s.lr), scheduler=pix2pix_lr)]

    def gan_fit(with_teacher: bool) -> Callable[[ArmRun], nn.Module]:
        def fit(run: ArmRun) -> nn.Module:
            teacher = FrozenTeacher(run.teacher) if with_teacher and run.teacher is not None else None
            signal = discriminator_signal(config.gan, task.extras["in_channels"], teacher=teacher)
            base = kd_terms(loss, channels) if with_teacher else [reconstruction_term(loss.rec)]
            return run.train(phases(*base, adversarial_term(signal, loss.gan)), signal)
        return fit

    feats = f" + λ_feat·Σ projected-feature L1 over {len(channels)} taps" if channels else ""
    kd_text = f"λ_rec·L1(y) + λ_out·L1(teacher){feats}; no discriminator"
    gan_text = f"λ_gan = {loss.gan:g} · cGAN (PatchGAN, {config.gan.n_layers} layers)"
    built = {
        "kd": Arm(lambda: phases(*kd_terms(loss, channels)), role="kd", batch_size=s.batch_size,
                  description=kd_text),
        "scratch": Arm(lambda: phases(reconstruction_term(loss.rec)), role="scratch", batch_size=s.batch_size,
                       description="L1 to the target only"),
        "scratch-gan": Arm(list, role="baseline", fit=gan_fit(False), needs_teacher=False, batch_size=s.batch_size,
                           description=f"plain Pix2Pix: λ_rec·L1(y) + {gan_text}"),
        "kd-gan": Arm(list, role="variant", fit=gan_fit(True), needs_teacher=True, batch_size=s.batch_size,
                      description=f"the kd loss + {gan_text}"),
    }
    return {name: built[name] for name in config.arms}


def compare(config: CompactConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """KD vs scratch, KD vs plain Pix2Pix, what a GAN adds to KD, and what it adds to scratch."""
    pairs = [("kd", "scratch"), ("kd", "scratch-gan"), ("kd-gan", "kd"), ("scratch-gan", "scratch")]
    return [p for p in pairs if set(p) <= set(arms)]


def notes(config: CompactConfig, task: Task) -> str:
    """The settings behind the numbers."""
    t, s, loss = config.teacher, config.student, config.loss
    widths = student_widths(config)
    return (f"Teacher: U-Net depth {t.depth}, widths {task.extras['teacher_widths']}; "
            + (f"weights {t.weights}. " if t.weights else
               f"Pix2Pix L1 + cGAN (λ_L1 = {t.lambda_l1:g}), {t.epochs} epochs, Adam lr {t.lr:g} (β1 0.5), "
               f"batch {t.batch_size}. ")
            + f"Students: same depth, widths {widths} (÷{s.width_divisor:g}), {s.epochs} epochs, Adam lr {s.lr:g} "
            f"(β1 0.5), batch {s.batch_size}, LR held for half the epochs then linear to 0. Loss weights: rec "
            f"{loss.rec:g}, output {loss.output:g}, feature {loss.feature:g}, gan {loss.gan:g}. PatchGAN: base "
            f"{config.gan.base}, {config.gan.n_layers} strided layers, {config.gan.mode} loss, Adam lr "
            f"{config.gan.lr:g}. Perceptual and Fréchet distances use the toolkit's own feature network "
            "(not LPIPS/FID; comparable only within this toolkit); `_teacher` columns compare with the teacher's "
            "images.")


def _sections(config: CompactConfig, results: dict, run: Path) -> list[tuple[str, str]]:
    from kd_generative.report import image_sections

    return image_sections(task(config, RunContext(out=run)), config.arms, config.seeds, results, run,
                          rows=config.metrics.grid_rows)


METHOD = study_method(
    "pix2pix-compact", CompactConfig, task=task, arms=arms, teacher_training=lambda c: None,
    title=lambda c, t: f"Compact Pix2Pix students, KD without a discriminator, on {t.description}", notes=notes,
    compare=compare, sections=_sections, domain="generative",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="Compact Pix2Pix U-Nets (¼ width): KD without a discriminator vs scratch, Pix2Pix and KD + GAN")
