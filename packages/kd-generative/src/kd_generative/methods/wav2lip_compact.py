"""Compact Wav2Lip students distilled without a discriminator (``wav2lip-compact``).

Kim, Kang, Seo, Park, Choi, Song, Kim and Lim, "A Unified Compression Framework for Efficient Speech-Driven
Talking-Face Generation", arXiv:2304.00471 (MLSys 2023 workshop on on-device intelligence): Wav2Lip (Prajwal et
al., ACM MM 2020) with every residual block removed and every width divided by 4 (about 28× fewer parameters),
trained by knowledge distillation **without adversarial learning**:

    L = λ_rec·‖G_s(x) − y‖₁ + λ_out·‖G_s(x) − G_t(x)‖₁ + λ_feat·Σ_j ‖φ_j(F_s^j) − F_t^j‖₁ + λ_sync·L_sync(G_s(x), a),

φ_j a learned 1×1 convolution from the student's channels to the teacher's on matched decoder stages, L_sync the
frozen expert's sync loss. The λ's are not published; as the spec suggests, all start at 1 and λ_sync at 0.03
(Wav2Lip's). Arms, on the same student, initialisation and data order for a seed:

- ``kd``: the loss above (the paper's method);
- ``scratch``: ``λ_rec·L1 + λ_sync·L_sync`` (Wav2Lip's loss without its discriminator);
- ``scratch-gan``: Wav2Lip's scratch training, ``scratch`` + ``λ_gan·GAN`` with a visual-quality discriminator
  (a PatchGAN on the lower half, :mod:`.wav2lip_losses`); λ_gan = 0.07, Wav2Lip's;
- ``kd-gan``: ``kd`` + ``λ_gan·GAN``.

The task (:mod:`kd_generative.tasks.talking`) trains the teacher (the full generator, L1 + λ_sync·L_sync) and the
experts once and caches them. Optimisers: Adam (β1 0.5), the learning rate held for half of training, then
decayed linearly to zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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

from kd_generative.methods.features import ProjectedL1, tap_channels
from kd_generative.methods.pix2pix import adam, adversarial_term, pix2pix_lr, reconstruction_term
from kd_generative.methods.study_common import check_arms, latest_task
from kd_generative.methods.wav2lip_losses import WAV2LIP_GAN, WAV2LIP_SYNC, check_critic, critic_signal, sync_term
from kd_generative.talking.expert import SyncExpert
from kd_generative.tasks.config import GanConfig
from kd_generative.tasks.talking import talking_task
from kd_generative.tasks.talking_config import ExpertConfig, TalkingData, TalkingTeacher

__all__ = ["ARMS", "METHOD", "LossConfig", "StudentConfig", "Wav2LipCompactConfig", "arms", "compare",
           "decoder_stage_taps", "kd_terms", "pairs", "task"]

ARMS = ("kd", "scratch", "scratch-gan", "kd-gan")
_GAN_ARMS = ("scratch-gan", "kd-gan")


class StudentConfig(Section):
    """The compact student: the teacher's widths × ``width_multiplier`` (0.25: widths / 4; checked to lie in
    (0, 1]) with ``residuals`` residual blocks per stage (0: all removed); ``epochs`` of Adam ``lr`` (β1 0.5) in
    batches of ``batch_size`` windows."""

    width_multiplier: float = 0.25
    residuals: Annotated[int, Field(ge=0)] = 0
    epochs: Annotated[int, Field(ge=1)] = 2
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(ge=1)] = 16


class LossConfig(Section):
    """The loss weights: ``rec`` (L1 to the real frames), ``output`` (L1 to the teacher's frames), ``feature``
    (each projected feature L1), ``sync`` (the expert sync loss, every arm), ``gan`` (the GAN arms). ``feature_taps``:
    generator module paths matched between teacher and student (default: every decoder stage, ``decoder.0`` …)."""

    rec: Annotated[float, Field(ge=0)] = 1.0
    output: Annotated[float, Field(ge=0)] = 1.0
    feature: Annotated[float, Field(ge=0)] = 1.0
    sync: Annotated[float, Field(ge=0)] = WAV2LIP_SYNC
    gan: Annotated[float, Field(ge=0)] = WAV2LIP_GAN
    feature_taps: list[str] | None = None


class MetricsConfig(Section):
    """``max_offset``: the audio offsets (± frames) of the LSE scores; ``strip_frames``: frames in the report's
    strip."""

    max_offset: Annotated[int, Field(ge=1, le=15)] = 6
    strip_frames: Annotated[int, Field(ge=1, le=16)] = 6


class Wav2LipCompactConfig(StudyRecipe):
    """The ``wav2lip-compact`` recipe."""

    method: Literal["wav2lip-compact"] = "wav2lip-compact"
    data: TalkingData = TalkingData()
    teacher: TalkingTeacher = TalkingTeacher()
    expert: ExpertConfig = ExpertConfig()
    student: StudentConfig = StudentConfig()
    loss: LossConfig = LossConfig()
    gan: GanConfig = GanConfig(base=16, n_layers=1, lr=1e-3)
    metrics: MetricsConfig = MetricsConfig()
    arms: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: list(ARMS))

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: list[str]) -> list[str]:
        return check_arms(value, ARMS)


def task(config: Wav2LipCompactConfig, context: RunContext) -> Task:
    """The talking-face task of the recipe (``latest_task``: the report and ``eval`` reuse it and its teacher). Bad
    sizes, widths, voices and discriminator geometry are refused here, before any data is built."""
    def build() -> Task:
        built = talking_task(config.data, config.teacher, config.expert,
                             width_multiplier=config.student.width_multiplier,
                             student_residuals=config.student.residuals, device=context.device,
                             reuse_teacher=config.reuse_teacher, max_offset=config.metrics.max_offset)
        if any(a in _GAN_ARMS for a in config.arms):
            check_critic(config.data.size, config.gan.n_layers)
        return built

    return latest_task(config, context, build)


def decoder_stage_taps(model: nn.Module) -> list[str]:
    """Every decoder stage of a talking-face generator (``decoder.0`` … ``decoder.{n-1}``)."""
    return [f"decoder.{j}" for j in range(len(model.decoder))]  # type: ignore[arg-type]


def kd_terms(loss: LossConfig, channels: dict[str, tuple[int, int]], expert: SyncExpert) -> list[Term]:
    """The ``kd`` arm's terms: L1 to the real frames, L1 to the teacher's, one projected feature L1 per tap
    (``channels``: tap -> (student channels, teacher channels)) and the expert sync loss."""
    return [reconstruction_term(loss.rec),
            Term("out", l1, student="logits", teacher="logits", weight=loss.output),
            *(Term(f"feat.{tap}", ProjectedL1(s, t), student=tap, teacher=tap, weight=loss.feature)
              for tap, (s, t) in channels.items()),
            sync_term(expert, loss.sync)]


def _feature_channels(config: Wav2LipCompactConfig, task: Task) -> dict[str, tuple[int, int]]:
    teacher = task.extras["build_teacher"]()
    taps = config.loss.feature_taps if config.loss.feature_taps is not None else decoder_stage_taps(teacher)
    if not taps or config.loss.feature == 0:
        return {}
    batch = task.example_batch(2)
    student = tap_channels(task.student(0), taps, batch, task.forward)
    teach = tap_channels(teacher, taps, batch, task.forward)
    return {tap: (student[tap], teach[tap]) for tap in taps}


def arms(config: Wav2LipCompactConfig, task: Task) -> dict[str, Arm]:
    """The arms ``config.arms`` names (see the module doc), all on the task's compact student."""
    s, loss, gan = config.student, config.loss, config.gan
    channels = _feature_channels(config, task) if {"kd", "kd-gan"} & set(config.arms) else {}

    def expert() -> SyncExpert:
        return task.extras["experts"]()["loss"]

    def phases(*terms: Term) -> list[Phase]:
        return [Phase("train", Objective(*terms), epochs=s.epochs, optimizer=adam(s.lr), scheduler=pix2pix_lr)]

    def scratch_terms() -> list[Term]:
        return [reconstruction_term(loss.rec), sync_term(expert(), loss.sync)]

    def gan_fit(with_teacher: bool) -> Callable[[ArmRun], nn.Module]:
        def fit(run: ArmRun) -> nn.Module:
            teacher = FrozenTeacher(run.teacher) if with_teacher and run.teacher is not None else None
            signal = critic_signal(gan.base, gan.n_layers, gan.lr, gan.beta1, gan.mode, teacher=teacher)
            base = kd_terms(loss, channels, expert()) if with_teacher else scratch_terms()
            return run.train(phases(*base, adversarial_term(signal, loss.gan)), signal)
        return fit

    feats = f" + λ_feat·Σ projected-feature L1 over {len(channels)} decoder stages" if channels else ""
    sync = f"λ_sync·L_sync (λ_sync = {loss.sync:g})"
    kd_text = f"λ_rec·L1(y) + λ_out·L1(teacher){feats} + {sync}; no discriminator"
    gan_text = f"λ_gan = {loss.gan:g} · GAN (lower-half PatchGAN, {gan.n_layers} layers, {gan.mode})"
    options = {"batch_size": s.batch_size, "distiller": {"monitor": "val/psnr"}}
    built = {
        "kd": Arm(lambda: phases(*kd_terms(loss, channels, expert())), role="kd", description=kd_text, **options),
        "scratch": Arm(lambda: phases(*scratch_terms()), role="scratch", description=f"λ_rec·L1(y) + {sync}",
                       **options),
        "scratch-gan": Arm(list, role="baseline", fit=gan_fit(False), needs_teacher=False,
                           description=f"Wav2Lip's loss: λ_rec·L1(y) + {sync} + {gan_text}", **options),
        "kd-gan": Arm(list, role="variant", fit=gan_fit(True), needs_teacher=True,
                      description=f"the kd loss + {gan_text}", **options),
    }
    return {name: built[name] for name in config.arms}


def pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """KD vs scratch, KD vs Wav2Lip-style scratch + GAN, what a GAN adds to KD, and what it adds to scratch (those
    whose arms are among ``names``)."""
    present = set(names)
    wanted = [("kd", "scratch"), ("kd", "scratch-gan"), ("kd-gan", "kd"), ("scratch-gan", "scratch")]
    return [p for p in wanted if set(p) <= present]


def compare(config: Wav2LipCompactConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """The study's comparison pairs: :func:`pairs` of the arms."""
    return pairs(arms)


def notes(config: Wav2LipCompactConfig, task: Task) -> str:
    """The settings behind the numbers."""
    t, s, loss, e = config.teacher, config.student, config.loss, config.expert
    return (f"Teacher: the full generator (face width {t.width}, audio width {t.audio_width}, {t.residuals} "
            f"residual blocks per stage), L1 + {t.sync:g}·L_sync, {t.epochs} epochs, Adam lr {t.lr:g} (β1 0.5), "
            f"batch {t.batch_size}. Students: widths × {s.width_multiplier:g}, {s.residuals} residual blocks, "
            f"{s.epochs} epochs, Adam lr {s.lr:g} (β1 0.5), batch {s.batch_size} windows of 5 frames, LR held for "
            f"half of training then linear to 0. Loss weights: rec {loss.rec:g}, output {loss.output:g}, feature "
            f"{loss.feature:g}, sync {loss.sync:g}, gan {loss.gan:g}. Experts: {e.steps} steps, widths {e.width}/"
            f"{e.audio_width}, embedding {e.embed}; the sync loss uses seed {e.seed}, the scores "
            f"{'the same expert' if e.eval_seed is None else f'seed {e.eval_seed}'}. Discriminator: PatchGAN on the "
            f"lower half, base {config.gan.base}, {config.gan.n_layers} strided layers, {config.gan.mode} loss, Adam "
            f"lr {config.gan.lr:g}.")


def _sections(config: Wav2LipCompactConfig, results: dict, run: Path) -> list[tuple[str, str]]:
    from kd_generative.methods.wav2lip_report import wav2lip_sections

    built = task(config, RunContext(out=run))
    return wav2lip_sections(built, config.arms, config.seeds, results, run, pairs(config.arms),
                            strip_frames=config.metrics.strip_frames)


METHOD = study_method(
    "wav2lip-compact", Wav2LipCompactConfig, task=task, arms=arms, teacher_training=lambda c: None,
    title=lambda c, t: f"Compact Wav2Lip students, KD without a discriminator, on {t.description}", notes=notes,
    compare=compare, sections=_sections, domain="generative",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="Compact Wav2Lip (no residual blocks, ¼ width): KD without a discriminator vs scratch, scratch + GAN, "
            "KD + GAN")
