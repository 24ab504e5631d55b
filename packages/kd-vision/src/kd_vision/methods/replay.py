"""Generative replay and distillation for class-incremental learning on real digits (``replay-cil``), as a Study.

Jodelet, Liu, Phua and Murata, "Class-Incremental Learning using Diffusion Model for Distillation and
Replay", arXiv:2306.17560 (ICCV 2023 workshops). A frozen, pretrained generator draws images of the
classes seen in earlier tasks; they enter **both** the distillation loss (logit KD from the frozen previous
model f_{t−1}) and the classification loss (labelled replay), next to the current task's data and a small
exemplar memory. The stream, losses, memory, generator and metrics live in ``kd_vision.cil``; this module is
the config and the arms.

Offline stand-in for the paper's Stable Diffusion and image data: digits split into tasks of 2 classes;
the generator is a per-class Gaussian mixture (5 diagonal components) fitted once, before the stream, on
images of all classes from ``data.generator_source`` (the task's ``val`` split), then frozen. Like Stable
Diffusion against CIFAR, the generator's source may differ from the stream's: with ``generator_source:
mnist5k`` and a ``sklearn8x8`` stream it is fitted on 28x28 MNIST digits mapped onto the 8x8 grid
(``kd_vision.data.digits.downsample_digits``); with the same source it is fitted on a split disjoint from the
stream and the test set. The classifier keeps a fixed 10-way head whose unseen classes are masked. Each arm's
``fit`` runs the whole stream for its variant, one ``run.distiller`` per task; the evaluator scores the test
split as the class-incremental metrics (headline: average incremental accuracy). Arms (variants of
``kd_vision.cil.training``): ``A-finetune`` (the scratch twin: no KD, no memory), ``B-exemplars-kd`` (plain
KD: memory + old-class logit KD), ``C-generated-kd`` (B + generated images in KD only),
``D-generated-replay`` (the paper), ``E-exemplar-replay`` (memory in CE, no KD), ``F-exemplars-kd-nme``
(B's training classified by iCaRL's nearest mean of exemplars) and ``G-generated-replay-nme`` (D's training,
classified the same way). The study's teacher is the joint-training
reference (the same model trained on the whole stream at once); no arm distils from it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.checkpoint import save_weights
from kd_core.recipes import RunContext
from kd_core.signals import FrozenTeacher
from kd_core.study import Arm, ArmRun, Role, TrainSpec
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Splits, Task
from pydantic import Field, field_validator, model_validator
from torch import nn

from kd_vision.cil.evaluation import IncrementalClassifier, IncrementalEvaluator
from kd_vision.cil.generators import GaussianMixtureGenerator
from kd_vision.cil.heads import SeenClassesForward
from kd_vision.cil.nme import NearestMeanClassifier
from kd_vision.cil.runner import StreamSettings, run_stream
from kd_vision.cil.stream import make_tasks
from kd_vision.cil.training import VARIANTS, VariantName
from kd_vision.data.digits import MEAN, STD, DigitsDataset, downsample_digits, make_splits
from kd_vision.methods.common import Strict, TrainConfig, single_phase
from kd_vision.tasks import build_vision_model

NUM_CLASSES = 10
ARMS = {"A": "A-finetune", "B": "B-exemplars-kd", "C": "C-generated-kd", "D": "D-generated-replay",
        "E": "E-exemplar-replay", "F": "F-exemplars-kd-nme", "G": "G-generated-replay-nme"}
ROLES: dict[str, Role] = {"A": "scratch", "B": "kd", "C": "baseline", "D": "variant", "E": "baseline",
                          "F": "baseline", "G": "baseline"}
Source = Literal["mnist5k", "sklearn8x8"]


class DataConfig(Strict):
    """Stratified splits (sizes over all 10 classes): ``train_size`` images of ``source`` form the stream,
    ``test_size`` more measure accuracy, and ``generator_size`` images of ``generator_source`` (default: the
    stream's source, then a third disjoint split) fit the generator. A different generator source is mapped
    onto the stream's image grid (``mnist5k`` onto ``sklearn8x8``: :func:`downsample_digits`)."""

    source: Source = "sklearn8x8"
    generator_source: Source | None = None
    generator_size: Annotated[int, Field(gt=0)] = 600
    train_size: Annotated[int, Field(gt=0)] = 700
    test_size: Annotated[int, Field(gt=0)] = 450

    @model_validator(mode="after")
    def _a_generator_source_that_maps_onto_the_stream(self) -> DataConfig:
        if self.generator_source not in (None, self.source) and (self.generator_source, self.source) != (
                "mnist5k", "sklearn8x8"):
            raise ValueError(f"data.generator_source must be {self.source!r} (the stream's) or, for a sklearn8x8 "
                             f"stream, 'mnist5k', received {self.generator_source!r}")
        return self

    @property
    def shared_source(self) -> bool:
        """Whether the generator is fitted on the stream's own source (a disjoint split of it)."""
        return self.generator_source in (None, self.source)


class StreamConfig(Strict):
    """The task stream: the class order cut into tasks of ``classes_per_task`` classes."""

    classes_per_task: Annotated[int, Field(gt=0)] = 2
    class_order: list[int] = Field(default_factory=lambda: list(range(NUM_CLASSES)))

    @field_validator("class_order")
    @classmethod
    def _a_permutation_of_the_digits(cls, value: list[int]) -> list[int]:
        if sorted(value) != list(range(NUM_CLASSES)):
            raise ValueError(f"stream.class_order must be a permutation of 0..{NUM_CLASSES - 1}, received {value}")
        return value

    @model_validator(mode="after")
    def _tasks_divide_the_classes(self) -> StreamConfig:
        if NUM_CLASSES % self.classes_per_task or NUM_CLASSES // self.classes_per_task < 2:
            raise ValueError(f"stream.classes_per_task must divide {NUM_CLASSES} into at least 2 tasks, "
                             f"received {self.classes_per_task}")
        return self


class MemoryConfig(Strict):
    """Exemplars kept per class (random selection)."""

    per_class: Annotated[int, Field(gt=0)] = 5


class GeneratorConfig(Strict):
    """The frozen Gaussian-mixture generator: components per class, images drawn per old class and task."""

    components: Annotated[int, Field(gt=0)] = 5
    per_class: Annotated[int, Field(gt=0)] = 100
    seed: int = 0


class KDConfig(Strict):
    """Old-class logit KD from f_{t−1}: temperature T and weight λ."""

    temperature: Annotated[float, Field(gt=0)] = 2.0
    weight: Annotated[float, Field(ge=0)] = 1.0


class ReplayConfig(StudyRecipe):
    """The ``replay-cil`` recipe: the variants to run as arms (D, the paper, always among them)."""

    method: Literal["replay-cil"] = "replay-cil"
    arms: Annotated[list[VariantName], Field(min_length=1)] = Field(
        default_factory=lambda: ["A", "B", "C", "D", "E", "F", "G"])
    data: DataConfig = DataConfig()
    stream: StreamConfig = StreamConfig()
    memory: MemoryConfig = MemoryConfig()
    generator: GeneratorConfig = GeneratorConfig()
    train: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=2e-3)
    reference_epochs: Annotated[int, Field(gt=0)] | None = None
    kd: KDConfig = KDConfig()

    @model_validator(mode="after")
    def _arms_hold_the_paper(self) -> ReplayConfig:
        if len(set(self.arms)) != len(self.arms) or "D" not in self.arms:
            raise ValueError(f"arms must not repeat and must include D (the paper), received {self.arms}")
        return self

    def reference_training(self) -> TrainSpec:
        """How the joint-training reference (the study's teacher) trains: ``train``, for ``reference_epochs`` when
        set (one pass over the whole stream needs more epochs than one task to converge)."""
        return self.train.model_copy(update={"epochs": self.reference_epochs or self.train.epochs}).train_spec()

    def tasks(self) -> list[tuple[int, ...]]:
        """The class order cut into tasks."""
        return make_tasks(self.stream.class_order, self.stream.classes_per_task)


def stream_fit(config: ReplayConfig, variant: str, generator: dict[str, GaussianMixtureGenerator]
               ) -> Callable[[ArmRun], nn.Module]:
    """``Arm.fit``: the whole stream for ``variant``, one ``run.distiller`` per task; the student keeps its
    accuracy matrix, saved as the arm's final checkpoint (with ``stream.json``)."""
    def fit(run: ArmRun) -> nn.Module:
        task, outer = run.study.task, run.student
        nme = VARIANTS[variant].nme
        if VARIANTS[variant].generated and "fitted" not in generator:  # once per study, on the generator's split
            g = config.generator
            generator["fitted"] = GaussianMixtureGenerator.fit(task.data.val, components=g.components, seed=g.seed,
                                                               clip=((0.0 - MEAN) / STD, (1.0 - MEAN) / STD))

        def train_task(model: nn.Module, objective: Any, dataset: Any, seen: Any, out: Path, seed: int,
                       extra: dict[str, Any]) -> nn.Module:
            previous = FrozenTeacher(copy.deepcopy(model)) if objective.needs_teacher else None
            run.student = model
            distiller = run.distiller(single_phase(objective, config.train, name="task"), previous,
                                      forward=SeenClassesForward(seen), seed=seed)
            distiller.fit(dataset, None, out=out, config={**run.config(), **extra},
                          resume=run.resume and (out / "config.yaml").is_file())
            return distiller.student

        c = config
        settings = StreamSettings(train=c.train, memory_per_class=c.memory.per_class, num_classes=NUM_CLASSES,
                                  generated_per_class=c.generator.per_class, kd_temperature=c.kd.temperature,
                                  kd_weight=c.kd.weight)
        result = run_stream(variant, c.tasks(), task.data.train, task.data.test, generator.get("fitted"), settings,
                            run.seed, run.out, run.study.backend, run.study.progress, resume=run.resume,
                            model=outer.net.net if nme else outer, trainer=train_task)
        student = outer if nme else result.model
        assert isinstance(student, IncrementalClassifier)
        if nme:  # the trained network inside the nearest-mean classifier the stream ended with
            assert isinstance(result.model, NearestMeanClassifier)
            student.net = result.model
        student.record(result.matrix)
        save_weights(student, run.out / "checkpoints" / "final.safetensors")
        (run.out / "stream.json").write_text(json.dumps(result.as_dict(), indent=1))
        return student
    return fit


def arms(config: ReplayConfig, task: Task | None) -> dict[str, Arm]:
    """One arm per variant: A the scratch twin, B plain KD, D (the paper) the variant, C, E, F and G baselines (F
    and G with a student whose network is classified by the nearest mean of exemplars)."""
    generator: dict[str, GaussianMixtureGenerator] = {}  # fitted once, shared by the arms and seeds
    return {ARMS[v]: Arm(list, role=ROLES[v], batch_size=config.train.batch_size,
                         fit=stream_fit(config, v, generator), description=VARIANTS[v].description,
                         student=nme_student(task) if VARIANTS[v].nme and task is not None else None)
            for v in sorted(config.arms)}


def nme_student(task: Task) -> Callable[[int], nn.Module]:
    """The task's student with its network classified by the nearest mean of exemplars (the means are buffers,
    so ``eval`` rebuilds and reloads it)."""
    def build(seed: int) -> nn.Module:
        student = task.student(seed)
        assert isinstance(student, IncrementalClassifier)
        student.net = NearestMeanClassifier(student.net, NUM_CLASSES)
        return student
    return build


def compare(config: ReplayConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Plain KD vs fine-tuning, the paper's chain D > C > B > A, then KD over exemplar replay (B − E), the
    nearest-mean classifier against the head on the same training (F − B, G − D), the paper against both
    (D − E, D − F) and the paper's generated replay on the nearest-mean base (G − F)."""
    order = [("B", "A"), ("D", "B"), ("D", "A"), ("D", "C"), ("C", "B"), ("B", "E"), ("F", "B"), ("D", "E"),
             ("D", "F"), ("G", "D"), ("G", "F")]
    return [(ARMS[a], ARMS[b]) for a, b in order if ARMS[a] in arms and ARMS[b] in arms]


def task(config: ReplayConfig, context: RunContext) -> Task:
    """The class-incremental digits task: stream (train), the generator's data (val) and test; students
    keep their accuracy history; the teacher is the same model, trained jointly on the whole stream."""
    d, tasks = config.data, config.tasks()
    splits = stream_splits(d)
    evaluator = IncrementalEvaluator(tasks)

    def model() -> nn.Module:  # digits: one channel; errors name train.model / train.weights
        return build_vision_model(config.train, "train", NUM_CLASSES, 1, context.trust)

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return IncrementalClassifier(model(), len(tasks))

    return Task(name="digits-cil", splits=lambda: splits, student=student,
                teacher=model,
                key={**d.model_dump(), "model": config.train.model}, evaluator=evaluator,
                headline="average_incremental_accuracy", percent=evaluator.metric_names(),
                description=f"class-incremental {d.source} digits, {len(tasks)} tasks of "
                            f"{config.stream.classes_per_task} classes, generator fitted on "
                            + (f"a disjoint {d.source} split" if d.shared_source else f"{d.generator_source}"),
                class_names=[str(c) for c in range(NUM_CLASSES)], student_field="train.model",
                teacher_field="train.model")


def stream_splits(data: DataConfig) -> Splits:
    """Stream (train), the generator's data (val) and test. Same source: three disjoint splits of it, as
    before; another source: the stream and test split ``data.source`` and the generator's images come from
    ``data.generator_source``, mapped onto the stream's 8x8 grid."""
    if data.shared_source:
        parts = make_splits(data.source, train_size=data.generator_size, val_size=data.train_size,
                            test_size=data.test_size, seed=0)
        return Splits(train=parts["val"], val=parts["train"], test=parts["test"])
    parts = make_splits(data.source, train_size=data.train_size, val_size=0, test_size=data.test_size, seed=0)
    assert data.generator_source is not None
    return Splits(train=parts["train"], val=mapped_generator_data(data.generator_source, data.generator_size),
                  test=parts["test"])


def mapped_generator_data(source: str, size: int) -> DigitsDataset:
    """``size`` stratified images of ``source`` (28x28 MNIST) mapped onto scikit-learn's 8x8 digits."""
    pool = make_splits(source, train_size=size, val_size=0, test_size=0, seed=0)["train"]
    return DigitsDataset(downsample_digits(pool.images[pool.indices]), pool.labels[pool.indices])


def notes(config: ReplayConfig, task: Task) -> str:
    """The stream, memory, generator, KD and training settings behind the numbers."""
    c = config
    source = (f"a {c.data.source} split disjoint from stream and test" if c.data.shared_source else
              f"{c.data.generator_source} digits mapped onto the stream's 8x8 grid (cropped to MNIST's 20x20 digit "
              "box, area-averaged, stretched to a saturated stroke and quantised to scikit-learn's 17 levels)")
    return (f"Stream: class order {c.stream.class_order}; fixed 10-way head, unseen classes masked; the val split "
            f"is the generator's data: {source}. Memory: "
            f"{c.memory.per_class} random exemplars per class. Generator: per-class Gaussian mixture, "
            f"{c.generator.components} diagonal components, fitted once on the generator's data and frozen; "
            f"{c.generator.per_class} images per old class at every task. KD: old-class logits of the frozen "
            f"previous model, T = {c.kd.temperature}, λ = {c.kd.weight}. F and G: B's and D's networks classified "
            "by the nearest mean of the exemplars' L2-normalised penultimate features (iCaRL), separate arms (their "
            f"training is B's and D's for the same seed). Model {c.train.model}, {c.train.epochs} "
            f"epochs per task, AdamW lr {c.train.lr}, cosine decay, batch {c.train.batch_size}. The teacher is the "
            "joint-training reference (the same model trained on the whole stream at once for "
            f"{c.reference_epochs or c.train.epochs} epochs, scored as one model "
            "after every step); no arm distils from it. a[i][j] is the test accuracy on task j after task i among "
            "the classes seen so far; average incremental accuracy = mean over tasks of the mean of row i; "
            "results.json also holds final_accuracy, forgetting (mean drop from the best earlier accuracy) and "
            "accuracy_after_task<i>; each arm's matrix is in `<arm>-seed<seed>/stream.json`.")


METHOD = study_method(
    "replay-cil", ReplayConfig, task=task, arms=arms, compare=compare, notes=notes,
    teacher_training=lambda c: c.reference_training(),
    title=lambda c, t: f"Generative replay and distillation (replay-cil) on {t.description}", domain="vision",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="Class-incremental digits: generated old-class images in KD and CE replay vs KD only, exemplar KD, "
            "fine-tuning")
