"""Generative replay and distillation for class-incremental learning on real digits (``replay-cil``).

Jodelet, Liu, Phua and Murata, "Class-Incremental Learning using Diffusion Model for Distillation and
Replay", arXiv:2306.17560 (ICCV 2023 workshops). A frozen, pretrained generator draws images of the
classes seen in earlier tasks; they enter **both** the distillation loss (logit KD from the frozen previous
model f_{t−1}) and the classification loss (labelled replay), next to the current task's data and a small
exemplar memory.

Offline stand-in for the paper's Stable Diffusion and image data: digits split into 5 tasks of 2 classes;
the generator is a per-class Gaussian mixture (5 components, diagonal covariance) fitted once, before the
stream, on a split of all classes disjoint from the stream's data and test set, then frozen. The classifier
keeps a fixed 10-way head whose unseen classes are masked out. The plan runs the chosen variant (default D,
the paper) and, for reference, the variants in ``compare`` (default A, fine-tuning) over every seed, and
reports average incremental accuracy, final accuracy and forgetting (definitions in
:mod:`kd_vision.cil.metrics`), the accuracy matrix and an accuracy-per-task plot. Variants are described in
:mod:`kd_vision.cil.training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from kd_core import Backend
from kd_core.checkpoint import load_weights
from kd_core.metrics import format_mean_std
from kd_core.progress import console, progress_bar
from kd_core.recipes import Method, RecipeConfig, RunContext
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from pydantic import Field, field_validator, model_validator

from kd_vision.cil.evaluation import accuracy_row
from kd_vision.cil.generators import GaussianMixtureGenerator
from kd_vision.cil.plots import plot_accuracy_per_task
from kd_vision.cil.runner import StreamSettings, run_stream
from kd_vision.cil.stream import make_tasks
from kd_vision.cil.training import VARIANTS, VariantName
from kd_vision.data.digits import MEAN, STD, DigitsDataset, make_splits
from kd_vision.methods.common import Strict, TrainConfig, open_run
from kd_vision.models import build_model

NUM_CLASSES = 10
METRICS = {"average_incremental_accuracy": "avg incremental acc %", "final_accuracy": "final acc %",
           "forgetting": "forgetting (pts)"}


class DataConfig(Strict):
    """Three disjoint, stratified splits of one digits set (sizes over all 10 classes).

    ``generator_size`` images fit the generator (its "pretraining" data), ``train_size`` images form the
    stream (each task takes its classes' share), ``test_size`` images measure accuracy.
    """

    source: Literal["mnist5k", "sklearn8x8"] = "sklearn8x8"
    generator_size: Annotated[int, Field(gt=0)] = 600
    train_size: Annotated[int, Field(gt=0)] = 700
    test_size: Annotated[int, Field(gt=0)] = 450


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


class ReplayConfig(RecipeConfig):
    """The ``replay-cil`` recipe."""

    method: Literal["replay-cil"] = "replay-cil"
    variant: VariantName = "D"
    compare: list[VariantName] = Field(default_factory=lambda: ["A"])
    data: DataConfig = DataConfig()
    stream: StreamConfig = StreamConfig()
    memory: MemoryConfig = MemoryConfig()
    generator: GeneratorConfig = GeneratorConfig()
    train: TrainConfig = TrainConfig(model="student-cnn", epochs=15, lr=2e-3)
    kd: KDConfig = KDConfig()
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])

    @property
    def variants(self) -> list[str]:
        """The chosen variant first, then the reference variants (no repeats)."""
        return list(dict.fromkeys([self.variant, *self.compare]))


class ReplayPlan:
    """Fit the generator once, run every variant over every seed through the stream, then report."""

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config

    def splits(self) -> dict[str, DigitsDataset]:
        """``generator`` (the generator's pool), ``train`` (the stream) and ``test``: disjoint, stratified."""
        c = self.config.data
        parts = make_splits(c.source, train_size=c.generator_size, val_size=c.train_size, test_size=c.test_size,
                            seed=0)
        return {"generator": parts["train"], "train": parts["val"], "test": parts["test"]}

    def generator(self, pool: DigitsDataset) -> GaussianMixtureGenerator:
        """The frozen generator, fitted on ``pool``; samples are clipped to the real pixel range."""
        g = self.config.generator
        return GaussianMixtureGenerator.fit(pool, components=g.components, seed=g.seed,
                                            clip=((0.0 - MEAN) / STD, (1.0 - MEAN) / STD))

    def settings(self) -> StreamSettings:
        """What every stream run shares."""
        c = self.config
        return StreamSettings(train=c.train, memory_per_class=c.memory.per_class,
                              generated_per_class=c.generator.per_class, kd_temperature=c.kd.temperature,
                              kd_weight=c.kd.weight, num_classes=NUM_CLASSES)

    def tasks(self) -> list[tuple[int, ...]]:
        """The class order cut into tasks."""
        return make_tasks(self.config.stream.class_order, self.config.stream.classes_per_task)

    def run(self, context: RunContext) -> Path:
        """Run every variant and seed under ``context.out``; write results.json, plots and report.md."""
        backend = Backend(device=context.device, precision=context.precision)
        top = open_run(context, self.config.model_dump(), self.config.seeds[0], backend)
        splits = self.splits()
        generator = self.generator(splits["generator"])
        tasks = self.tasks()
        runs: dict[str, dict[str, dict]] = {}
        with progress_bar() as progress:
            for variant in self.config.variants:
                runs[variant] = {}
                for seed in self.config.seeds:
                    result = run_stream(variant, tasks, splits["train"], splits["test"], generator, self.settings(),
                                        seed, top.path / f"{variant}-seed{seed}", backend, progress,
                                        resume=context.resume)
                    runs[variant][str(seed)] = result.as_dict()
        results = {"tasks": [list(t) for t in tasks], "variants": {
            v: {"description": VARIANTS[v].description, "seeds": by_seed,
                "mean": {k: sum(r[k] for r in by_seed.values()) / len(by_seed) for k in METRICS}}
            for v, by_seed in runs.items()},
            "splits": {name: len(split) for name, split in splits.items()}}
        top.write_json("results.json", results)
        self._report(top, results, context)
        console.print(f"replay-cil: run and report in {top.path}")
        return top.path

    def _report(self, top: RunDir, results: dict, context: RunContext) -> Path:
        c = self.config
        rows = []
        for v, entry in results["variants"].items():
            per_seed = list(entry["seeds"].values())
            rows.append({"variant": f"{v}: {entry['description']}",
                         **{label: format_mean_std([100 * r[k] for r in per_seed]) for k, label in METRICS.items()}})
        per_seed_rows = [{"variant": v, "seed": s, **{label: 100 * r[k] for k, label in METRICS.items()}}
                         for v, entry in results["variants"].items() for s, r in entry["seeds"].items()]
        chosen = results["variants"][c.variant]["seeds"]
        task_names = ["+".join(map(str, t)) for t in results["tasks"]]
        matrix_rows = []
        for i, name in enumerate(task_names):
            cells = {f"task {task_names[j]}": sum(100 * r["matrix"][i][j] for r in chosen.values()) / len(chosen)
                     for j in range(i + 1)}
            matrix_rows.append({"after task": name, **cells})
        reference = [v for v in c.variants if v != c.variant]
        mean = {v: results["variants"][v]["mean"] for v in c.variants}
        verdicts = "; ".join(
            f"{c.variant} forgets {'less' if mean[c.variant]['forgetting'] < mean[v]['forgetting'] else 'not less'} "
            f"than {v} ({100 * mean[c.variant]['forgetting']:.1f} vs {100 * mean[v]['forgetting']:.1f} pts)"
            for v in reference) or "no reference variant was run"
        summary_text = (
            f"Variant **{c.variant}** ({VARIANTS[c.variant].description}): {verdicts}.\n\n"
            f"Data: {c.data.source}, {c.data.generator_size} images to fit the generator (all classes, disjoint), "
            f"{c.data.train_size} stream images, {c.data.test_size} test images; {len(results['tasks'])} tasks of "
            f"{c.stream.classes_per_task} classes in the order {c.stream.class_order}. Fixed 10-way head with "
            f"unseen classes masked. Memory: {c.memory.per_class} random exemplars per class. Generator: per-class "
            f"Gaussian mixture, {c.generator.components} diagonal components, frozen; {c.generator.per_class} images "
            f"per old class and task. KD: old-class logits, T = {c.kd.temperature}, λ = {c.kd.weight}. Model "
            f"{c.train.model}, {c.train.epochs} epochs per task, AdamW lr {c.train.lr}, cosine decay, batch "
            f"{c.train.batch_size}; seeds {c.seeds}.\n\n"
            "Metrics (see `kd_vision.cil.metrics`): a[i][j] is the accuracy on task j's test images after task i, "
            "predicting among all classes seen so far. Average incremental accuracy = mean over tasks of the mean "
            "accuracy on the tasks seen so far; final accuracy = that mean after the last task; forgetting = mean "
            "over old tasks of (best earlier accuracy − final accuracy).\n")
        plot = plot_accuracy_per_task(
            {f"{v}: {results['variants'][v]['description']}": [r["matrix"] for r in results["variants"][v]["seeds"]
                                                                .values()] for v in c.variants},
            top.plots / "accuracy_per_task.png")
        return write_report(top, "Generative replay for class-incremental digits (replay-cil)", [
            ("Summary", summary_text),
            ("Results (test split, mean ± std over seeds)", markdown_table(rows)),
            ("Per seed", markdown_table(per_seed_rows, digits=2)),
            (f"Accuracy matrix of {c.variant} (%, mean over seeds)",
             markdown_table(matrix_rows, ["after task", *(f"task {n}" for n in task_names)], digits=1)),
            ("Reproduce", f"```\n{command_line()}\n```\nDevice: {context.device}, precision: {context.precision}. "
                          "Environment in `env.json`, resolved recipe in `config.yaml`.\n"),
        ], plots=[("Accuracy on all seen classes after each task", plot)])

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Final accuracy (all tasks, all classes) of each variant's last model in a finished run."""
        backend = Backend(device=device)
        tasks = self.tasks()
        test = self.splits()["test"]
        scores = {}
        for variant in self.config.variants:
            for seed in self.config.seeds:
                model = build_model(self.config.train.model, num_classes=NUM_CLASSES)
                last = Path(run) / f"{variant}-seed{seed}" / f"task{len(tasks) - 1}"
                load_weights(model, last / "checkpoints" / "final.safetensors")
                row = accuracy_row(model.to(backend.device), test, tasks, backend)
                scores[f"{variant}/seed{seed}/final_accuracy"] = sum(row) / len(row)
        return scores


def build(config: ReplayConfig) -> ReplayPlan:
    """The plan for a validated ``replay-cil`` config."""
    return ReplayPlan(config)


METHOD = Method(name="replay-cil", config_model=ReplayConfig, build=build, domain="vision",
                recipes=Path(__file__).resolve().parent.parent / "recipes",
                summary="Class-incremental digits: frozen generator samples in KD and CE replay vs fine-tuning")
