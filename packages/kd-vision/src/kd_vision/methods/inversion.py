"""Data-free KD by model inversion: ``natural-inversion`` and its baseline ``deep-inversion``.

Kim, Park, Kim and Kim, "NaturalInversion: Data-Free Image Synthesis Improving Real-World Consistency",
AAAI 2022, arXiv:2306.16661; Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via
DeepInversion", CVPR 2020, arXiv:1912.08795.

The plan (1) trains or reuses a BatchNorm CNN teacher on real digits, (2) for every seed synthesises
``images_per_class`` images per class by inverting the teacher (saved as safetensors in the run
directory, with a PNG grid), (3) distils a student on the synthetic images only, through ``Distiller``
with a ``FrozenTeacher`` and the KD term T²·KL(p_T^τ ‖ p_S^τ) at τ = 4, and (4) evaluates the student on
the real test split. It reports the student's accuracy and the feature Fréchet distance (FD) between
synthetic and real test images in the teacher's penultimate space, mean ± std over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core import Backend, Objective, Term
from kd_core.checkpoint import load_weights
from kd_core.engine import classification_evaluator
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.metrics import format_mean_std, mean_std
from kd_core.plots import plot_bars
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from kd_vision.data.digits import DigitsDataset, make_splits
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
from kd_vision.methods.common import Strict, TrainConfig, cached_model, fit, open_run, single_phase
from kd_vision.models import build_model

NUM_CLASSES = 10


class DataConfig(Strict):
    """Real digits: the teacher's training pool, a validation split for the teacher, and the test split.

    The students never see a real training image: they learn from synthetic images only.
    """

    source: Literal["mnist5k", "sklearn8x8"] = "sklearn8x8"
    train_size: Annotated[int, Field(gt=0)] = 1000
    val_size: Annotated[int, Field(gt=0)] = 200
    test_size: Annotated[int, Field(gt=1)] = 500


class SynthesisConfig(Strict):
    """What both inversions share: how many images, iterations, the prior weights and the jitter.

    Defaults: NaturalInversion's CIFAR-10 weights (w_bn 10, w_tv 6e-3, w_l2 1.5e-5), jitter ±2 px with
    flips; 20 images per class in one batch of 200 and 400 iterations (a CPU-sized setting;
    the paper uses batches of 256 and 2000 iterations).
    """

    images_per_class: Annotated[int, Field(gt=0)] = 20
    batch_size: Annotated[int, Field(ge=2)] = 200
    iterations: Annotated[int, Field(gt=0)] = 400
    w_bn: Annotated[float, Field(ge=0)] = 10.0
    w_tv: Annotated[float, Field(ge=0)] = 6e-3
    w_l2: Annotated[float, Field(ge=0)] = 1.5e-5
    jitter: Annotated[int, Field(ge=0)] = 2
    flip: bool = True

    def weights(self) -> PriorWeights:
        """The prior weights."""
        return PriorWeights(bn=self.w_bn, tv=self.w_tv, l2=self.w_l2)


class DeepSynthesisConfig(SynthesisConfig):
    """DeepInversion: Adam on the pixels at ``lr``."""

    lr: Annotated[float, Field(gt=0)] = 0.05


class NaturalSynthesisConfig(SynthesisConfig):
    """NaturalInversion: learning rates of the generator, FTP and ACS; generator size; component switches.

    ``ftp_taps`` names the teacher feature maps of the pyramid (shallowest first); None picks the last
    BatchNorm output at each spatial resolution.
    """

    lr_generator: Annotated[float, Field(gt=0)] = 1e-3
    lr_ftp: Annotated[float, Field(gt=0)] = 5e-4
    lr_acs: Annotated[float, Field(gt=0)] = 5e-2
    latent_dim: Annotated[int, Field(gt=0)] = 1024
    generator_width: Annotated[int, Field(ge=2)] = 128
    use_ftp: bool = True
    use_acs: bool = True
    ftp_taps: Annotated[list[str], Field(min_length=1)] | None = None


class KDConfig(Strict):
    """The distillation on synthetic images: T²·KL at ``temperature`` plus ``ce_weight``·CE on the target labels."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0


class InversionRecipe(RecipeConfig):
    """Fields both inversion recipes share."""

    data: DataConfig = DataConfig()
    teacher: TrainConfig = TrainConfig(model="teacher-cnn", epochs=20, lr=2e-3)
    student: TrainConfig = TrainConfig(model="student-cnn", epochs=30, lr=1e-2)
    kd: KDConfig = KDConfig()
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    reuse_teacher: bool = True
    penultimate_tap: str = "in:fc"


class NaturalInversionConfig(InversionRecipe):
    """The ``natural-inversion`` recipe."""

    method: Literal["natural-inversion"] = "natural-inversion"
    synthesis: NaturalSynthesisConfig = NaturalSynthesisConfig()


class DeepInversionConfig(InversionRecipe):
    """The ``deep-inversion`` recipe."""

    method: Literal["deep-inversion"] = "deep-inversion"
    synthesis: DeepSynthesisConfig = DeepSynthesisConfig()


def kd_objective(kd: KDConfig) -> Objective:
    """T²·KL(teacher ‖ student) at ``kd.temperature`` (+ ``kd.ce_weight``·CE on the synthesis targets)."""
    terms = [Term("kd", kl_divergence, student="logits", teacher="logits", temperature=kd.temperature,
                  direction="forward")]
    if kd.ce_weight > 0:
        terms.append(Term("ce", cross_entropy, student="logits", target="label", weight=kd.ce_weight))
    return Objective(*terms)


def supervised_objective() -> Objective:
    """Cross-entropy on the labels alone (the teacher's training)."""
    return Objective(Term("ce", cross_entropy, student="logits", target="label"))


def build_inverter(config: NaturalInversionConfig | DeepInversionConfig) -> NaturalInversion | DeepInversion:
    """The inversion method a config describes."""
    s = config.synthesis
    common = {"iterations": s.iterations, "weights": s.weights(), "jitter": s.jitter, "flip": s.flip}
    if isinstance(s, NaturalSynthesisConfig):
        return NaturalInversion(lr_generator=s.lr_generator, lr_ftp=s.lr_ftp, lr_acs=s.lr_acs,
                                latent_dim=s.latent_dim, generator_width=s.generator_width, use_ftp=s.use_ftp,
                                use_acs=s.use_acs, ftp_taps=s.ftp_taps, **common)
    return DeepInversion(lr=s.lr, **common)


def _stack(dataset: DigitsDataset) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return batch["input"], batch["label"]


class InversionPlan:
    """Teacher, then per seed: synthesis, KD on the synthetic set, evaluation on real test digits; a report."""

    def __init__(self, config: NaturalInversionConfig | DeepInversionConfig) -> None:
        self.config = config

    # -- pieces -----------------------------------------------------------------------------------
    def _splits(self) -> dict[str, DigitsDataset]:
        c = self.config.data
        return make_splits(c.source, train_size=c.train_size, val_size=c.val_size, test_size=c.test_size, seed=0)

    def _teacher(self, splits, out: Path, backend: Backend, progress, resume: bool) -> tuple[nn.Module, str]:
        def build() -> nn.Module:
            torch.manual_seed(0)
            return build_model(self.config.teacher.model, num_classes=NUM_CLASSES)

        def train(model: nn.Module) -> nn.Module:
            t = self.config.teacher
            return fit(model, single_phase(supervised_objective(), t), splits, out / "teacher", backend, "teacher",
                       progress, seed=0, batch_size=t.batch_size,
                       config={"recipe": self.config.model_dump(), "role": "teacher"}, resume=resume)

        require_batchnorm(build())  # refused before any training or synthesis
        teacher, note = cached_model(build, train, "digits", self.config.reuse_teacher,
                                       data=self.config.data.model_dump(), teacher=self.config.teacher.model_dump())
        return teacher.to(backend.device).eval(), note

    def _student(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(self.config.student.model, num_classes=NUM_CLASSES)

    def _synthetic(self, teacher: nn.Module, image_shape: tuple[int, int, int], seed: int, top: RunDir,
                   progress, resume: bool) -> SyntheticImages:
        path = top.path / f"synthetic-seed{seed}.safetensors"
        if resume and path.is_file():
            return SyntheticImages.load(path)
        s = self.config.synthesis
        synthetic = synthesize(build_inverter(self.config), teacher, num_classes=NUM_CLASSES, image_shape=image_shape,
                               images_per_class=s.images_per_class, batch_size=s.batch_size, seed=seed,
                               progress=progress, label=f"synthesis s{seed}")
        synthetic.save(path)
        plot_image_grid(synthetic.images, synthetic.labels, top.plots / f"synthetic-seed{seed}.png",
                        title=f"{self.config.method}, seed {seed}")
        return synthetic

    # -- the whole plan -----------------------------------------------------------------------------
    def run(self, context: RunContext) -> Path:
        """Teacher, synthesis, KD and evaluation for every seed, then the report, under ``context.out``."""
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, self.config.model_dump(), self.config.seeds[0], backend)
        splits = self._splits()
        image_shape = tuple(splits["train"][0]["input"].shape)
        synthetic: dict[int, SyntheticImages] = {}
        students: dict[int, nn.Module] = {}
        with progress_bar() as progress:
            teacher, teacher_note = self._teacher(splits, top.path, backend, progress, context.resume)
            for seed in self.config.seeds:
                synthetic[seed] = self._synthetic(teacher, image_shape, seed, top, progress, context.resume)
                s = self.config.student
                students[seed] = fit(
                    self._student(seed), single_phase(kd_objective(self.config.kd), s), {"train": synthetic[seed]},
                    top.path / f"student-seed{seed}", backend, f"KD s{seed}", progress, seed=seed,
                    batch_size=s.batch_size, config={"recipe": self.config.model_dump(), "role": "student",
                                                     "seed": seed}, teacher=teacher, resume=context.resume)
        console.print("evaluating on the real test split")
        results = self._evaluate(teacher, students, synthetic, splits, backend)
        top.write_json("results.json", results)
        self._report(top, results, teacher_note, context)
        return top.path

    def _evaluate(self, teacher: nn.Module, students: dict[int, nn.Module], synthetic: dict[int, SyntheticImages],
                  splits, backend: Backend) -> dict[str, Any]:
        test_x, test_y = _stack(splits["test"])
        train_x, _ = _stack(splits["train"])
        loader = [backend.to_device({"input": test_x, "label": test_y})]

        def score(model: nn.Module) -> dict[str, float]:
            return classification_evaluator(model, loader, lambda m, b: m(b["input"]))

        tap = self.config.penultimate_tap
        real = penultimate_features(teacher, test_x, tap)
        results: dict[str, Any] = {
            "method": self.config.method, "teacher": score(teacher),
            "fd_real_train_vs_test": frechet_distance(penultimate_features(teacher, train_x, tap), real),
            "seeds": {}}
        for seed, student in students.items():
            syn = synthetic[seed]
            agree = classification_evaluator(teacher, [backend.to_device({"input": syn.images, "label": syn.labels})],
                                             lambda m, b: m(b["input"]))["accuracy"]
            results["seeds"][str(seed)] = {
                "student": score(student),
                "fd_synthetic_vs_real": frechet_distance(penultimate_features(teacher, syn.images, tap), real),
                "teacher_accuracy_on_synthetic": agree,
                "synthesis_loss": sum(syn.provenance.get("batch_losses", [0.0])) /
                                  max(len(syn.provenance.get("batch_losses", [])), 1),
                "images": len(syn)}
        accs = [r["student"]["accuracy"] for r in results["seeds"].values()]
        fds = [r["fd_synthetic_vs_real"] for r in results["seeds"].values()]
        results["summary"] = {"student_accuracy_mean": mean_std(accs)[0], "student_accuracy_std": mean_std(accs)[1],
                              "fd_mean": mean_std(fds)[0], "fd_std": mean_std(fds)[1]}
        return results

    def _report(self, top: RunDir, results: dict[str, Any], teacher_note: str, context: RunContext) -> Path:
        c = self.config
        per_seed = results["seeds"]
        rows = [{"seed": seed, "student test acc %": 100 * r["student"]["accuracy"],
                 "FD synthetic vs real": r["fd_synthetic_vs_real"],
                 "teacher acc on synthetic %": 100 * r["teacher_accuracy_on_synthetic"],
                 "best synthesis loss": r["synthesis_loss"], "images": r["images"]} for seed, r in per_seed.items()]
        accs = [100 * r["student"]["accuracy"] for r in per_seed.values()]
        fds = [r["fd_synthetic_vs_real"] for r in per_seed.values()]
        s = c.synthesis
        components = ""
        if isinstance(s, NaturalSynthesisConfig):
            components = (f" Generator: latent {s.latent_dim}, width {s.generator_width}; FTP "
                          f"{'on' if s.use_ftp else 'off'}, ACS {'on' if s.use_acs else 'off'}; Adam lrs G "
                          f"{s.lr_generator}, FTP {s.lr_ftp}, α {s.lr_acs}.")
        else:
            components = f" Pixels optimised directly with Adam, lr {s.lr}."
        summary = (f"Student trained on **synthetic images only**: test accuracy **{format_mean_std(accs)} %** "
                   f"(teacher {100 * results['teacher']['accuracy']:.2f} %), feature FD synthetic vs real "
                   f"**{format_mean_std(fds)}** (real train vs real test: "
                   f"{results['fd_real_train_vs_test']:.2f}), mean ± std over {len(accs)} seeds.\n\n"
                   f"Synthesis ({c.method}): {s.images_per_class} images per class in batches of {s.batch_size}, "
                   f"{s.iterations} iterations per batch, loss CE + {s.w_bn}·BN + {s.w_tv}·TV + {s.w_l2}·L2, "
                   f"jitter ±{s.jitter} px{', flips' if s.flip else ''}.{components}\n\n"
                   f"KD: {c.student.model}, {c.student.epochs} epochs, AdamW lr {c.student.lr}, T = "
                   f"{c.kd.temperature}, CE weight {c.kd.ce_weight}. Data: {c.data.source}, teacher "
                   f"({c.teacher.model}) {teacher_note}; FD in the teacher's `{c.penultimate_tap}` space against "
                   f"{c.data.test_size} real test digits.\n")
        bars = plot_bars({f"seed {seed}": 100 * r["student"]["accuracy"] for seed, r in per_seed.items()}
                         | {"teacher": 100 * results["teacher"]["accuracy"]},
                         top.plots / "accuracy.png", title="Test accuracy (real digits)", ylabel="accuracy (%)")
        plots = [(f"Synthetic images, seed {seed}", top.plots / f"synthetic-seed{seed}.png") for seed in per_seed
                 if (top.plots / f"synthetic-seed{seed}.png").is_file()]
        return write_report(top, f"{c.method}: data-free KD on digits", [
            ("Summary", summary),
            ("Per seed", markdown_table(rows, digits=2)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: {context.precision}. "
                          f"Synthetic sets in `synthetic-seed*.safetensors`; environment in `env.json`, "
                          f"resolved recipe in `config.yaml`.\n"),
        ], plots=[*plots, ("Test accuracy", bars)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Real-test accuracy of the final students of a finished run."""
        backend = Backend(device=device)
        test_x, test_y = _stack(self._splits()["test"])
        loader = [backend.to_device({"input": test_x, "label": test_y})]
        scores = {}
        for seed in self.config.seeds:
            model = load_weights(self._student(seed), Path(run) / f"student-seed{seed}" / "checkpoints" /
                                 "final.safetensors").to(backend.device)
            scores[f"student/seed{seed}/accuracy"] = classification_evaluator(
                model, loader, lambda m, b: m(b["input"]))["accuracy"]
        return scores


def build(config: NaturalInversionConfig | DeepInversionConfig) -> InversionPlan:
    """The plan for a validated inversion config."""
    return InversionPlan(config)


_RECIPES = Path(__file__).resolve().parent.parent / "recipes"

NATURAL_INVERSION = Method(name="natural-inversion", config_model=NaturalInversionConfig, build=build,
                           domain="vision", recipes=_RECIPES,
                           summary="NaturalInversion data-free KD: generator + FTP + ACS synthesis, KD on it")
DEEP_INVERSION = Method(name="deep-inversion", config_model=DeepInversionConfig, build=build, domain="vision",
                        recipes=_RECIPES, summary="DeepInversion data-free KD: pixel-space synthesis, KD on it")
