"""TinyBERT: Transformer distillation (embeddings, pre-softmax attention, hidden states, then predictions).

Jiao, Yin, Shang, Jiang, Chen, Li, Wang and Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351. The losses, the uniform layer map g(m) = m·N/M and
the learned projection W_h are in ``kd_nlu.tinybert.objectives``; the word-replacement augmentation (neighbours
in the teacher's input embeddings: no GloVe or MLM head offline) in ``kd_nlu.tinybert.augment``.

``tinybert-task`` is a ``Study`` over any text task (``kd_nlu.tasks``: WordNet glosses by default, or
``data.source=csv:FILE``; teacher ``minilm``, fine-tuned here, or ``hf:DIR``). Every arm starts from the same
student (``student.model``: a ``small`` BERT, or ``hf:DIR`` such as a ``tinybert-general`` student), trains
``student.epochs`` epochs on the same augmented train split, and is evaluated on the same test split:

- ``tinybert`` (variant): ``intermediate.epochs`` of intermediate-layer distillation, then prediction-layer
  distillation (soft cross-entropy at ``temperature``) for the remaining epochs; never a gold label;
- ``kd`` (kd): prediction-layer distillation alone for every epoch;
- ``scratch`` (scratch): cross-entropy on the labels for every epoch;
- ``intermediate-then-ce`` (baseline): the intermediate stage, then cross-entropy on the labels.

Each arm's phases restart AdamW with cosine decay. ``<arm>-seed<seed>/layer_losses.json`` holds the
intermediate-layer loss per term on the validation split before and after training (and the layer map).

``tinybert-general`` distils a pre-trained encoder (not fine-tuned) into a small one on unlabelled text
(fortunes and WordNet example sentences, or ``data.text_file``): a ``Study`` with one arm, ``general``,
scored on held-out text by the attention-score MSE to the teacher (the attention term of the objective,
which needs no projection) and the linear CKA of the mapped hidden states. The student is saved with
``save_pretrained`` and the teacher's tokenizer in ``general-seed<seed>/model``, so ``tinybert-task`` can
start from it (``student.model=hf:RUN/general-seed0/model``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.engine import Phase, adamw, cosine_lr
from kd_core.errors import ConfigError
from kd_core.objective import Objective
from kd_core.recipes import RunContext
from kd_core.signals import FrozenTeacher
from kd_core.study import Arm, ArmRun
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Splits, Task
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_nlu.data.text import TextCollator, TextDataset
from kd_nlu.methods.common import Strict, supervised_objective
from kd_nlu.models.student import with_tokenizer
from kd_nlu.tasks import TextData, TextModel, text_task
from kd_nlu.tinybert.augment import augmented
from kd_nlu.tinybert.evaluation import general_evaluator
from kd_nlu.tinybert.layers import check_layer_map, encoder_layout
from kd_nlu.tinybert.objectives import (
    PARTS,
    hidden_forward,
    intermediate_objective,
    objective_values,
    prediction_objective,
)

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
Part = Literal["embeddings", "attention", "hidden"]
ArmName = Literal["tinybert", "kd", "scratch", "intermediate-then-ce"]
ROLES = {"tinybert": "variant", "kd": "kd", "scratch": "scratch", "intermediate-then-ce": "baseline"}


class LayerConfig(Strict):
    """Intermediate-layer distillation: the layer map (default uniform), the projection and the parts."""

    layer_map: list[int] | None = None
    projection: bool = True
    parts: Annotated[list[Part], Field(min_length=1)] = Field(default_factory=lambda: list(PARTS))
    mask_padding: bool = True
    average_heads: bool = False


class AugmentConfig(Strict):
    """Word replacement: p per word, top-M neighbours, N augmented copies per training text."""

    enabled: bool = True
    p: Annotated[float, Field(ge=0, le=1)] = 0.4
    top_m: Annotated[int, Field(gt=0)] = 15
    copies: Annotated[int, Field(ge=0)] = 2
    seed: int = 0


class StageConfig(Strict):
    """The intermediate-layer stage: its epochs (out of ``student.epochs``) and AdamW learning rate."""

    epochs: Annotated[int, Field(gt=0)] = 3
    lr: Annotated[float, Field(gt=0)] = 5e-4


class TaskConfig(StudyRecipe):
    """The ``tinybert-task`` recipe: ``student.epochs`` is every arm's budget, ``student.lr`` the learning rate of
    the prediction, KD and cross-entropy phases."""

    method: Literal["tinybert-task"] = "tinybert-task"
    latency_iterations: Annotated[int, Field(ge=0)] = 20
    data: TextData = TextData(max_length=32)
    teacher: TextModel = TextModel()
    student: TextModel = TextModel(model="small", epochs=6, lr=3e-4)
    intermediate: StageConfig = StageConfig()
    layers: LayerConfig = LayerConfig()
    augment: AugmentConfig = AugmentConfig()
    temperature: Annotated[float, Field(gt=0)] = 1.0
    arms: Annotated[list[ArmName], Field(min_length=1)] = Field(
        default_factory=lambda: ["tinybert", "kd", "scratch", "intermediate-then-ce"])

    @model_validator(mode="after")
    def _budget(self) -> TaskConfig:
        if len(set(self.arms)) != len(self.arms) or "tinybert" not in self.arms:
            raise ValueError(f"arms must include 'tinybert' and not repeat, received {self.arms}")
        if self.intermediate.epochs >= self.student.epochs:
            raise ValueError(f"intermediate.epochs must be below student.epochs ({self.student.epochs}, every "
                             f"arm's budget), received {self.intermediate.epochs}")
        return self


def layer_objective(student: nn.Module, teacher: nn.Module, layers: LayerConfig, **changes: Any) -> Objective:
    """The intermediate-layer objective of a ``LayerConfig`` (``changes`` override its fields)."""
    options = {**layers.model_dump(), **changes}
    return intermediate_objective(student, teacher, **options)


def _batches(run: ArmRun, dataset: Dataset) -> list[Any]:
    loader = DataLoader(dataset, batch_size=64, collate_fn=run.study.task.collate)
    return [run.study.backend.to_device(b) for b in loader]


def fit_arm(run: ArmRun, phases: list[Phase], train: Dataset, layer_map: list[int] | None = None) -> nn.Module:
    """Train ``run.student`` through ``phases`` on ``train`` with the study's Distiller settings; when a phase is
    named ``intermediate``, write its per-term validation loss before and after, and ``layer_map``, to
    ``layer_losses.json``."""
    signal = FrozenTeacher(run.teacher) if any(p.objective.needs_teacher for p in phases) else None
    layers = next((p.objective for p in phases if p.name == "intermediate"), None)
    if layers is not None:
        val = _batches(run, run.study.task.data.val)
        device = run.study.backend.device
        before = objective_values(layers.to(device), run.student.to(device), run.teacher, val)
    distiller = run.distiller(phases, signal)
    distiller.fit(train, run.study.task.data.val, out=run.out, config=run.config(),
                  resume=run.resume and (run.out / "config.yaml").is_file())
    if layers is not None and run.study.backend.is_main:
        record = {"layer_map": layer_map, "split": "val", "before": before,
                  "after": objective_values(layers, distiller.student, run.teacher, val)}
        (run.out / "layer_losses.json").write_text(json.dumps(record, indent=1))
    return distiller.student


def layer_map(config: LayerConfig, student: nn.Module, teacher: nn.Module) -> list[int]:
    """The teacher layer each student layer learns from (``config.layer_map``, else uniform)."""
    return check_layer_map(config.layer_map, encoder_layout(student).num_layers, encoder_layout(teacher).num_layers)


def task_phases(config: TaskConfig, arm: str, student: nn.Module, teacher: nn.Module) -> list[Phase]:
    """The phases of one ``tinybert-task`` arm (see the module doc)."""
    s, stage = config.student, config.intermediate

    def phase(name: str, objective: Objective, epochs: int, lr: float) -> Phase:
        return Phase(name, objective, epochs=epochs, optimizer=adamw(lr, s.weight_decay), scheduler=cosine_lr)

    if arm in ("kd", "scratch"):
        objective = prediction_objective(config.temperature) if arm == "kd" else supervised_objective()
        return [phase("prediction" if arm == "kd" else "ce", objective, s.epochs, s.lr)]
    last = (phase("prediction", prediction_objective(config.temperature), s.epochs - stage.epochs, s.lr)
            if arm == "tinybert" else phase("ce", supervised_objective(), s.epochs - stage.epochs, s.lr))
    return [phase("intermediate", layer_objective(student, teacher, config.layers), stage.epochs, stage.lr), last]


def task_arms(config: TaskConfig, task: Task) -> dict[str, Arm]:
    """Every arm the recipe lists, all on the same augmented train split (built once, from the study's teacher)."""
    train: dict[str, TextDataset] = {}

    def fit(name: str) -> Callable[[ArmRun], nn.Module]:
        def run(arm_run: ArmRun) -> nn.Module:
            if "data" not in train:
                a = config.augment
                train["data"] = augmented(task.data.train, arm_run.teacher, a.copies if a.enabled else 0, a.p,
                                          a.top_m, a.seed)
            phases = task_phases(config, name, arm_run.student, arm_run.teacher)
            mapping = layer_map(config.layers, arm_run.student, arm_run.teacher)
            return fit_arm(arm_run, phases, train["data"], mapping)
        return run

    what = {"tinybert": f"intermediate layers {config.intermediate.epochs} epochs, then prediction layer (T = "
                        f"{config.temperature})",
            "kd": f"prediction layer alone (soft CE, T = {config.temperature})",
            "scratch": "cross-entropy on the labels alone",
            "intermediate-then-ce": f"intermediate layers {config.intermediate.epochs} epochs, then cross-entropy"}
    return {name: Arm(list, role=ROLES[name], fit=fit(name), batch_size=config.student.batch_size,
                      description=what[name]) for name in config.arms}


def task_compare(config: TaskConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """KD vs scratch, then TinyBERT vs KD, scratch and intermediate-then-CE, and that control vs scratch."""
    pairs = [("kd", "scratch"), ("tinybert", "kd"), ("tinybert", "scratch"), ("tinybert", "intermediate-then-ce"),
             ("intermediate-then-ce", "scratch")]
    return [p for p in pairs if set(p) <= set(arms)]


def task(config: TaskConfig, context: RunContext) -> Task:
    """The text task of ``data``, ``teacher`` and ``student`` (students saved with the tokenizer); an ``hf:DIR``
    student must share the teacher's vocabulary."""
    built = with_tokenizer(text_task(config.data, config.teacher, config.student, context))
    if config.student.model.startswith("hf:"):
        path = Path(config.student.model.removeprefix("hf:")).expanduser() / "config.json"
        vocab = json.loads(path.read_text()).get("vocab_size") if path.is_file() else None
        size = len(built.extras["tokenizer"])
        if vocab is not None and vocab != size:
            raise ConfigError("student.model", f"a model over the teacher's vocabulary ({size} tokens)",
                              f"vocab_size {vocab}")
    return built


def task_notes(config: TaskConfig, task: Task) -> str:
    """The settings behind the numbers."""
    a, s, stage = config.augment, config.student, config.intermediate
    texts = len(task.data.train) * (1 + (a.copies if a.enabled else 0))
    shape = f"{s.layers} layers × {s.hidden} (FFN {s.intermediate})" if s.model == "small" else s.model
    teacher = (f"teacher {config.teacher.model}, fine-tuned {config.teacher.epochs} epochs (AdamW lr "
               f"{config.teacher.lr}) on the train split" if not task.teacher_trained else
               f"teacher {config.teacher.model}, used as it is")
    return (f"Every arm trains {s.epochs} epochs on the same {texts:,} texts: the train split plus "
            f"{a.copies if a.enabled else 0} word-replacement copies of each (p = {a.p}, top-{a.top_m} neighbours in "
            f"the teacher's input embeddings). Intermediate stage: {stage.epochs} epochs, AdamW lr {stage.lr}, parts "
            f"{', '.join(config.layers.parts)}, layer map {config.layers.layer_map or 'uniform'}; the other phases "
            f"lr {s.lr}, batch {s.batch_size}, cosine decay restarted per phase. Student {shape}; {teacher}. "
            f"Per-term intermediate losses (val, before/after) in each arm's layer_losses.json.")


# -- tinybert-general ----------------------------------------------------------------------------------------
class GeneralData(Strict):
    """Unlabelled transfer text: ``text_file`` (UTF-8, one sentence per line; default fortunes + WordNet example
    sentences), how many sentences, how many held out (half validation, half test), the token budget."""

    text_file: str | None = None
    limit: Annotated[int, Field(gt=1)] = 4000
    held_out: Annotated[int, Field(ge=2)] = 200
    max_length: Annotated[int, Field(ge=4, le=512)] = 64
    seed: int = 0


class GeneralConfig(StudyRecipe):
    """The ``tinybert-general`` recipe: ``teacher.model`` (``minilm`` or ``hf:DIR``, used as it is) and the
    ``student`` (``small`` or ``hf:DIR``) with its training settings."""

    method: Literal["tinybert-general"] = "tinybert-general"
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0])
    latency_iterations: Annotated[int, Field(ge=0)] = 0
    data: GeneralData = GeneralData()
    teacher: TextModel = TextModel()
    student: TextModel = TextModel(model="small", epochs=2, lr=5e-4)
    layers: LayerConfig = LayerConfig()


def _encoder(spec: TextModel, role: str, base: Any = None) -> nn.Module:
    """A transformers encoder without a head: MiniLM, an ``hf:DIR`` (its base model) or a ``small`` BERT."""
    from transformers import AutoModel

    from kd_nlu.models.student import build_student, student_config
    from kd_nlu.models.teacher import _quiet_transformers, load_minilm
    from kd_nlu.tasks import _hf_dir

    if spec.model == "minilm":
        return load_minilm(None)[0]
    if spec.model.startswith("hf:"):
        with _quiet_transformers():
            return AutoModel.from_pretrained(str(_hf_dir(spec.model, f"{role}.model")), local_files_only=True,
                                             attn_implementation="eager", use_safetensors=True)
    if spec.model == "small" and base is not None:
        return build_student(student_config(base, spec.layers, spec.hidden, spec.intermediate), head=False)
    raise ConfigError(f"{role}.model", "'minilm' or 'hf:DIR'" if role == "teacher" else "'small' or 'hf:DIR'",
                      spec.model)


def general_task(config: GeneralConfig, context: RunContext) -> Task:
    """Unlabelled transfer text split into train, validation and test; the teacher encoder given as it is."""
    from kd_nlu.data.transfer import read_text_file, unlabelled_texts
    from kd_nlu.tasks import _tokenizer

    d = config.data
    texts = (read_text_file(d.text_file, "data.text_file", d.limit, d.seed) if d.text_file
             else unlabelled_texts(d.limit, d.seed))
    if d.held_out >= len(texts):
        raise ConfigError("data.held_out", f"fewer than the {len(texts)} sentences", d.held_out)
    tokenizer = _tokenizer(config.teacher)
    half = d.held_out // 2
    parts = {"val": texts[:half], "test": texts[half:d.held_out], "train": texts[d.held_out:]}
    splits = Splits(**{k: TextDataset(v, None, tokenizer, d.max_length) for k, v in parts.items()})
    teacher = cache(lambda: _encoder(config.teacher, "teacher"))

    def student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _encoder(config.student, "student", teacher().config)

    source = Path(d.text_file).name if d.text_file else "fortunes + WordNet example sentences"
    evaluator = general_evaluator(teacher, config.layers.layer_map, config.layers.average_heads)
    built = Task(name="transfer-text", splits=lambda: splits, teacher=teacher, student=student,
                 key={"texts": len(texts), "source": source, "teacher": config.teacher.model},
                 teacher_trained=True, evaluator=evaluator, headline="attention_mse", higher_is_better=False,
                 percent=(), forward=hidden_forward, collate=TextCollator(tokenizer.pad_token_id or 0),
                 description=f"unlabelled text ({source})", extras={"tokenizer": tokenizer})
    return with_tokenizer(built)


def general_arms(config: GeneralConfig, task: Task) -> dict[str, Arm]:
    """One arm: the intermediate-layer objective for ``student.epochs`` epochs."""
    s = config.student

    def fit(run: ArmRun) -> nn.Module:
        layers = layer_objective(run.student, run.teacher, config.layers)
        phase = Phase("intermediate", layers, epochs=s.epochs, optimizer=adamw(s.lr, s.weight_decay),
                      scheduler=cosine_lr)
        return fit_arm(run, [phase], task.data.train, layer_map(config.layers, run.student, run.teacher))

    return {"general": Arm(list, role="variant", fit=fit, batch_size=s.batch_size,
                           description=f"{', '.join(config.layers.parts)} MSE, {s.epochs} epochs")}


def general_notes(config: GeneralConfig, task: Task) -> str:
    """The settings behind the numbers."""
    s = config.student
    shape = f"{s.layers} layers × {s.hidden} (FFN {s.intermediate})" if s.model == "small" else s.model
    return (f"Student {shape}; teacher {config.teacher.model} (pre-trained, not fine-tuned). {s.epochs} epochs, "
            f"AdamW lr {s.lr}, batch {s.batch_size}, cosine decay; parts {', '.join(config.layers.parts)}, layer map "
            f"{config.layers.layer_map or 'uniform'}. Scores on held-out text: attention_mse (lower is better; "
            f"the teacher scores 0) and hidden_cka (1 for the teacher). The student is saved with its tokenizer "
            f"in general-seed<seed>/model: start tinybert-task from it with student.model=hf:<that folder>.")


TASK = study_method(
    "tinybert-task", TaskConfig, task=task, arms=task_arms, compare=task_compare, notes=task_notes,
    teacher_training=lambda c: c.teacher.train_spec(), domain="nlu", recipes=RECIPES,
    title=lambda c, t: f"TinyBERT task distillation vs prediction KD, scratch and intermediate-then-CE on "
                       f"{t.description}",
    summary="TinyBERT task distillation (augmented intermediate, then prediction layer) vs KD, CE and controls")
GENERAL = study_method(
    "tinybert-general", GeneralConfig, task=general_task, arms=general_arms, notes=general_notes,
    teacher_training=lambda c: None, domain="nlu", recipes=RECIPES,
    title=lambda c, t: f"TinyBERT general distillation of {c.teacher.model} on {t.description}",
    summary="TinyBERT general distillation: a pre-trained encoder -> small BERT on unlabelled text")
