"""The ambiguity methods' ``Task``: texts with human label distributions, scored by JSD to them.

Data (``data.source``): ``vader`` (the VADER lexicon's ten human ratings per token binned into
negative/neutral/positive, ``kd_nlu.data.vader``) or ``jsonl:PATH``, one ``{"text": ..., "human": [p_1, ...,
p_C]}`` object per line, class names from ``data.label_names``. Models train on the majority label (ties drawn
by a seeded generator) and are scored against the full distributions: the headline is the Jensen–Shannon
distance (lower is better; study reports show it ×100), beside accuracy, ECE, KL(human ‖ model) and the
confidence of wrong predictions.

Model (``model``): ``minilm`` (the bundled MiniLM-L6) or ``hf:DIR`` (a local Hugging Face directory with its
tokenizer), with a fresh classification head; teacher and students share it. Students are saved with
``save_pretrained`` (S1's lower head is not part of the saved classifier).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import torch
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section
from kd_core.taps import unwrap
from kd_core.task import Splits, Task
from pydantic import Field, field_validator
from torch import nn

from kd_nlu.ambiguity.data import AmbiguityTask, split_task, vader_task
from kd_nlu.ambiguity.evaluation import soft_label_evaluator
from kd_nlu.data.text import TextCollator, encoder_forward

__all__ = ["AmbiguityData", "ambiguity_task", "read_human_jsonl"]

#: metrics a study report shows ×100 (JSD too: its differences between arms are thousandths)
PERCENT = ("accuracy", "ece", "jsd")


class AmbiguityData(Section):
    """The source of texts with human distributions, the split sizes (a seeded permutation) and ``max_length``."""


    source: str = "vader"
    label_names: list[str] = Field(default_factory=lambda: ["negative", "neutral", "positive"])
    train_size: Annotated[int, Field(gt=0)] = 4000
    val_size: Annotated[int, Field(gt=0)] = 1000
    test_size: Annotated[int, Field(gt=0)] = 2000
    max_length: Annotated[int, Field(ge=2)] = 16
    split_seed: int = 0

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value != "vader" and not (value.startswith("jsonl:") and value[6:]):
            raise ValueError(f"'vader' or 'jsonl:PATH', received {value!r}")
        return value


def read_human_jsonl(path: Path, label_names: list[str], tie_seed: int = 0) -> AmbiguityTask:
    """A task from ``{"text", "human"}`` lines; a bad line is a ``ConfigError`` naming ``data.source``."""
    if not path.is_file():
        raise ConfigError("data.source", "an existing jsonl file", str(path))
    texts, human = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            texts.append(str(row["text"]))
            human.append([float(v) for v in row["human"]])
        except (ValueError, KeyError, TypeError):
            raise ConfigError("data.source", '{"text": ..., "human": [probabilities]} on every line',
                              f"{path}:{number}: {line[:80]}") from None
        if len(human[-1]) != len(label_names) or abs(sum(human[-1]) - 1) > 1e-3 or min(human[-1]) < 0:
            raise ConfigError("data.source", f"distributions over the {len(label_names)} data.label_names",
                              f"{path}:{number}: {human[-1]}")
    return AmbiguityTask.from_distributions(texts, torch.tensor(human), label_names, tie_seed)


def _tokenizer(model: str) -> Any:
    from kd_nlu.models.teacher import load_tokenizer

    if model == "minilm":
        return load_tokenizer()
    from transformers import AutoTokenizer

    path = Path(model.removeprefix("hf:")).expanduser()
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError("model", "'minilm' or hf:DIR, a Hugging Face directory with its tokenizer", model,
                          hint=type(err).__name__) from None


def _save(model: nn.Module, directory: Path) -> None:
    model = unwrap(model)
    getattr(model, "model", model).save_pretrained(directory)  # a SelfDistillModel saves its classifier only


def ambiguity_task(data: AmbiguityData, model: str, context: RunContext | None = None) -> Task:
    """The task of ``data`` with ``model`` as teacher and students (see the module doc)."""
    from kd_nlu.tasks import TextModel, build_text_model

    if model != "minilm" and not model.startswith("hf:"):
        raise ConfigError("model", "'minilm' or 'hf:DIR'", model)
    if data.source == "vader":
        source, checksum = vader_task(tie_seed=data.split_seed), "vader-3.3.2"
        if data.label_names != ["negative", "neutral", "positive"]:
            raise ConfigError("data.label_names", "negative, neutral, positive for VADER", data.label_names)
    else:
        path = Path(data.source[6:]).expanduser()
        source = read_human_jsonl(path, data.label_names, data.split_seed)
        from kd_core.datacache import file_sha256

        checksum = file_sha256(path)[:16]
    parts = split_task(source, data.train_size, data.val_size, data.test_size, seed=data.split_seed)
    tokenizer = _tokenizer(model)
    splits = Splits(*(parts[k].dataset(tokenizer, data.max_length) for k in ("train", "val", "test")))
    spec, names = TextModel(model=model), data.label_names

    def build(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_text_model(spec, "model", names, spec)

    what = "VADER lexicon tokens" if data.source == "vader" else f"texts from {Path(data.source[6:]).name}"
    return Task(name=f"ambiguity-{data.source.partition(':')[0]}", splits=lambda: splits, teacher=build,
                student=build, key={"source": checksum, "sizes": splits.sizes(), "split_seed": data.split_seed,
                                    "max_length": data.max_length, "model": model},
                evaluator=soft_label_evaluator, headline="jsd", higher_is_better=False, percent=PERCENT,
                forward=encoder_forward,
                collate=TextCollator(tokenizer.pad_token_id or 0), class_names=names, save=_save,
                description=f"{what} with human label distributions ({', '.join(names)})",
                extras={"tokenizer": tokenizer, "parts": parts})
