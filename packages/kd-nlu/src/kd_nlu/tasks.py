"""Text classification tasks from recipe fields: a user's own table of texts and labels, and their own
Hugging Face models, or the bundled MiniLM.

Data (``data.source``): ``glosses`` (built in: WordNet glosses labelled by lexicographer class,
``kd_nlu.data.glosses``; ``data.gloss_classes`` largest classes, at most ``data.per_class_cap`` glosses each,
``data.*_size`` glosses per split, defaults 3,000 / 400 / 600), or ``csv:PATH``, ``json:PATH``,
``jsonl:PATH`` or ``parquet:PATH``, read with Hugging Face ``datasets`` from local files;
``data.text_column`` and ``data.label_column`` name the columns (labels may be strings or integers; class
names are kept). The rows are split deterministically (seed 0, stratified
by label) with ``data.val_fraction`` and ``data.test_fraction``; ``data.*_size`` cap the splits.

Models (``teacher.model`` / ``student.model``):

- ``minilm``: the bundled MiniLM-L6 (``kd_nlu.models.teacher``); as a teacher it is fine-tuned on the train
  split by the study and cached;
- ``hf:DIR``: a local Hugging Face directory (``save_pretrained``), loaded from local files only. A teacher
  from a directory whose classifier already has the data's labels is used as it is (its accuracy is checked
  on val first); set ``teacher.trained=false`` to fine-tune it instead;
- ``small``: a BERT student with the teacher's vocabulary and ``student.layers``/``hidden``/``intermediate``.

Every model uses the teacher's tokenizer, which the teacher's directory must hold. Students are saved with
``save_pretrained`` (``id2label`` set from the class names) in ``<arm>-seed<seed>/model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from kd_core.datacache import file_sha256
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section
from kd_core.study import TrainSpec
from kd_core.task import Splits, Task, stratified_split
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import Subset

from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward

__all__ = ["TextData", "TextModel", "build_text_model", "read_table", "text_task"]

SCHEMES = ("csv", "json", "jsonl", "parquet")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


class TextData(Section):
    """Where a text task's rows come from, which columns hold text and label, and the split sizes."""


    source: str = "glosses"
    gloss_classes: Annotated[int, Field(ge=2, le=45)] = 16
    per_class_cap: Annotated[int, Field(gt=0)] | None = 250
    text_column: str = "text"
    label_column: str = "label"
    max_length: Annotated[int, Field(ge=4, le=512)] = 64
    train_size: Annotated[int, Field(gt=0)] | None = None
    val_size: Annotated[int, Field(gt=0)] | None = None
    test_size: Annotated[int, Field(gt=0)] | None = None
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if value != "glosses" and (scheme not in SCHEMES or not rest):
            raise ValueError(f"'glosses' or '<scheme>:PATH' with scheme one of {list(SCHEMES)}, received {value!r}")
        return value


class TextModel(Section):
    """A text model and how it is trained: ``minilm``, ``hf:DIR`` or ``small`` (a BERT of the shape below),
    AdamW settings, and for a teacher whether it comes trained on these labels (None: decide from the
    directory's labels)."""


    model: str = "minilm"
    trained: bool | None = None
    layers: Annotated[int, Field(gt=0)] = 4
    hidden: Annotated[int, Field(gt=0)] = 192
    intermediate: Annotated[int, Field(gt=0)] = 768
    epochs: Annotated[int, Field(gt=0)] = 3
    lr: Annotated[float, Field(gt=0)] = 1e-4
    batch_size: Annotated[int, Field(gt=0)] = 32
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    best_on: Literal["nll", "accuracy", "ece"] | None = None

    def train_spec(self) -> TrainSpec:
        """Epochs, learning rate, batch size, weight decay and ``best_on`` (end as the best epoch by that val
        metric: ``nll`` trains a teacher to convergence, early-stopped on val NLL; read for a study's teacher, the
        arms keep their own rule) as a ``TrainSpec``."""
        return TrainSpec(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
                         best_on=self.best_on)


def read_table(data: TextData) -> tuple[list[str], np.ndarray, list[str], str]:
    """Texts, integer labels, class names and the file's checksum from ``data.source``."""
    scheme, _, rest = data.source.partition(":")
    path = Path(rest).expanduser()
    if not path.is_file():
        raise ConfigError("data.source", f"an existing {scheme} file", str(path))
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder = "json" if scheme == "jsonl" else scheme
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", keep_in_memory=True)
    except Exception as err:  # any parse failure is a bad file, said in one line
        raise ConfigError("data.source", f"a readable {scheme} file", str(path),
                          hint=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    for argument, column in (("data.text_column", data.text_column), ("data.label_column", data.label_column)):
        if column not in table.column_names:
            raise ConfigError(argument, f"one of the file's columns {table.column_names}", column)
    texts = [str(t) for t in table[data.text_column]]
    raw = table[data.label_column]
    if any(v is None for v in raw) or any(not t.strip() for t in texts):
        raise ConfigError("data.source", "a text and a label in every row", f"empty cells in {path}")
    names = sorted({str(v) for v in raw}, key=lambda v: (not v.lstrip("-").isdigit(), int(v) if
                                                          v.lstrip("-").isdigit() else 0, v))
    if len(names) < 2:
        raise ConfigError("data.label_column", "labels of at least 2 classes", f"{len(names)} class(es)")
    index = {name: i for i, name in enumerate(names)}
    return texts, np.array([index[str(v)] for v in raw]), names, file_sha256(path)


def _hf_dir(spec: str, argument: str) -> Path:
    path = Path(spec.removeprefix("hf:")).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(argument, "a Hugging Face directory holding config.json (save_pretrained)", str(path))
    return path


def _tokenizer(teacher: TextModel) -> Any:
    from kd_nlu.models.teacher import load_tokenizer, minilm_path

    if teacher.model == "minilm":
        return load_tokenizer(minilm_path())
    path = _hf_dir(teacher.model, "teacher.model")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone: refuse instead
        raise ConfigError("teacher.model", f"a Hugging Face directory with its tokenizer ({list(TOKENIZER_FILES)})",
                          f"{path}: no tokenizer files", hint=f"save it with tokenizer.save_pretrained('{path}')")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError("teacher.model", "a Hugging Face directory with its tokenizer files", str(path),
                          hint=f"save the tokenizer with tokenizer.save_pretrained('{path}') "
                               f"({type(err).__name__})") from None


def build_text_model(spec: TextModel, role: str, class_names: list[str], teacher_spec: TextModel) -> nn.Module:
    """A sequence classifier for ``class_names`` from ``spec`` (``id2label`` set); errors name ``<role>.model``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from kd_nlu.models.student import build_student, student_config
    from kd_nlu.models.teacher import _quiet_transformers, load_minilm, minilm_path

    labels = {"num_labels": len(class_names), "id2label": dict(enumerate(class_names)),
              "label2id": {n: i for i, n in enumerate(class_names)}}
    if spec.model == "minilm":
        model, _ = load_minilm(len(class_names))
    elif spec.model.startswith("hf:"):
        path = _hf_dir(spec.model, f"{role}.model")
        with _quiet_transformers():
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(path), local_files_only=True, attn_implementation="eager", use_safetensors=True,
                    **({} if _has_labels(path, class_names) else {**labels, "ignore_mismatched_sizes": True}))
            except (OSError, ValueError) as err:
                raise ConfigError(f"{role}.model", "a loadable Hugging Face sequence-classification directory "
                                  "with safetensors weights", str(path), hint=str(err).splitlines()[0]) from None
    elif spec.model == "small":
        base = (AutoConfig.from_pretrained(str(minilm_path()), local_files_only=True)
                if teacher_spec.model == "minilm" else
                AutoConfig.from_pretrained(str(_hf_dir(teacher_spec.model, "teacher.model")), local_files_only=True))
        model = build_student(student_config(base, layers=spec.layers, hidden=spec.hidden,
                                             intermediate=spec.intermediate, num_labels=len(class_names)))
    else:
        raise ConfigError(f"{role}.model", "'minilm', 'hf:DIR' or 'small'", spec.model)
    model.config.id2label, model.config.label2id = labels["id2label"], labels["label2id"]
    return model


def _has_labels(path: Path, class_names: list[str]) -> bool:
    """Whether the directory's classifier was saved with exactly these class names."""
    import json

    config = json.loads((path / "config.json").read_text())
    saved = config.get("id2label") or {}
    return [saved.get(str(i)) for i in range(len(saved))] == class_names


def _save(model: nn.Module, directory: Path) -> None:
    model.save_pretrained(directory)


def _gloss_splits(data: TextData, tokenizer: Any) -> tuple[Splits, list[str], str, str]:
    from kd_nlu.data.glosses import source_files
    from kd_nlu.models.teacher import GlossDataConfig, gloss_datasets

    config = GlossDataConfig(num_classes=data.gloss_classes, per_class_cap=data.per_class_cap,
                             train_size=data.train_size or 3000, val_size=data.val_size or 400,
                             test_size=data.test_size or 600, max_length=data.max_length)
    task, parts = gloss_datasets(config, tokenizer)
    if "val" not in parts or "test" not in parts:
        raise ConfigError("data.val_size", "val and test glosses (sizes > 0)", config.model_dump())
    checksum = "-".join(file_sha256(f)[:8] for f in source_files())
    what = f"WordNet glosses by lexicographer class ({len(task.label_names)} classes)"
    return Splits(parts["train"], parts["val"], parts["test"]), list(task.label_names), checksum, what


def text_task(data: TextData, teacher: TextModel, student: TextModel, context: RunContext | None = None) -> Task:
    """A text classification task over ``data`` with the ``teacher`` and ``student`` specs."""
    tokenizer = _tokenizer(teacher)
    if data.source == "glosses":
        splits, names, checksum, what = _gloss_splits(data, tokenizer)
    else:
        texts, labels, names, checksum = read_table(data)
        positions = stratified_split(labels, data.val_fraction, data.test_fraction, "data.source")
        dataset = TextDataset(texts, labels.tolist(), tokenizer, max_length=data.max_length)
        caps = {"train": data.train_size, "val": data.val_size, "test": data.test_size}
        parts = {k: Subset(dataset, v[:caps[k]].tolist()) for k, v in positions.items()}
        splits = Splits(parts["train"], parts["val"], parts["test"])
        what = (f"texts from {Path(data.source.partition(':')[2]).name} ({len(names)} classes: "
                f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
    trained = teacher.trained
    if trained is None:
        trained = teacher.model.startswith("hf:") and _has_labels(_hf_dir(teacher.model, "teacher.model"), names)

    def build_teacher() -> nn.Module:
        return build_text_model(teacher, "teacher", names, teacher)

    def build_student(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_text_model(student, "student", names, teacher)

    return Task(name="glosses" if data.source == "glosses" else "text", splits=lambda: splits,
                teacher=build_teacher, student=build_student,
                key={"source": checksum[:16], "columns": [data.text_column, data.label_column],
                     "sizes": splits.sizes(), "max_length": data.max_length, "teacher": teacher.model},
                teacher_trained=trained, forward=encoder_forward, collate=TextCollator(tokenizer.pad_token_id or 0),
                description=what,
                class_names=names, save=_save, extras={"tokenizer": tokenizer})
