"""The text teacher of two-stage textual KD: MiniLM-L6 fine-tuned to classify the commands' transcripts.

Kim, Kim, Shin and Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language
Understanding", ICASSP 2021 (arXiv:2010.13105), fine-tune a text encoder on the transcripts (the same intent
labels, in the same order, as the speech student's) and distil its [CLS] vector (PT-KD) and its logits (FT-KD)
into the speech model. Here the text encoder is the bundled MiniLM-L6 (``kd_core.pretrained.minilm_path``,
offline), fine-tuned by cross-entropy through ``kd_core.Distiller`` (AdamW, cosine decay, the best validation
epoch kept) and cached under ``$KD_DATA_HOME/teachers/`` keyed by the texts, labels, classes and settings.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from kd_core import Backend, Distiller, Objective, Phase, Term, adamw, cosine_lr, cross_entropy
from kd_core.datacache import cached_model, sha256_bytes
from kd_core.errors import ConfigError
from kd_core.pretrained import minilm_fingerprint, minilm_path, quiet_transformers
from kd_core.recipes import Section, Seed
from kd_core.text_data import TextCollator, TextDataset, encoder_forward
from pydantic import Field
from torch import nn

__all__ = ["TextTeacher", "TextTeacherConfig", "load_text_model", "text_teacher"]


class TextTeacherConfig(Section):
    """How the text teacher is fine-tuned: epochs, AdamW learning rate and weight decay, batch size, the
    longest transcript in tokens, and the seed of the classifier's initialisation and the data order."""

    epochs: Annotated[int, Field(gt=0)] = 4
    lr: Annotated[float, Field(gt=0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    batch_size: Annotated[int, Field(gt=0)] = 16
    max_length: Annotated[int, Field(ge=4, le=512)] = 32
    seed: Seed = 0


@dataclass
class TextTeacher:
    """A fine-tuned text classifier with its tokenizer, class names (in the student's order) and provenance."""

    model: nn.Module
    tokenizer: Any
    classes: tuple[str, ...]
    note: str

    def dataset(self, texts: Sequence[str], labels: Sequence[int] | None = None, max_length: int = 32
                ) -> TextDataset:
        """``texts`` tokenised for this teacher (``{"input_ids", "attention_mask"[, "label"]}`` items)."""
        return TextDataset(texts, labels, self.tokenizer, max_length=max_length)

    @torch.no_grad()
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """The teacher's logits ``[len(texts), classes]`` (eval mode, on the model's device)."""
        device = next(self.model.parameters()).device
        collate = TextCollator(self.tokenizer.pad_token_id or 0)
        data = self.dataset(texts)
        out = []
        self.model.eval()
        for start in range(0, len(data), batch_size):
            batch = collate([data[i] for i in range(start, min(len(data), start + batch_size))])
            out.append(encoder_forward(self.model, {k: v.to(device) for k, v in batch.items()}).logits)
        return torch.cat(out)


def load_text_model(num_labels: int) -> tuple[nn.Module, Any]:
    """``(BertForSequenceClassification, tokenizer)``: MiniLM from its local files with a fresh ``num_labels``
    classifier (seed torch first)."""
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ConfigError("num_labels", "an integer >= 2", num_labels)
    from transformers import AutoTokenizer, BertForSequenceClassification

    path = str(minilm_path())
    with quiet_transformers():
        model = BertForSequenceClassification.from_pretrained(path, num_labels=num_labels, local_files_only=True)
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def _check(texts: Sequence[str], labels: Sequence[int], classes: Sequence[str], argument: str) -> None:
    if len(texts) != len(labels) or not texts:
        raise ConfigError(argument, "as many labels as texts, at least one", f"{len(texts)} texts, "
                          f"{len(labels)} labels")
    empty = next((i for i, t in enumerate(texts) if not str(t).strip()), None)
    if empty is not None:
        raise ConfigError(argument, "non-empty transcripts", f"an empty transcript at position {empty}")
    bad = next((y for y in labels if not 0 <= int(y) < len(classes)), None)
    if bad is not None:
        raise ConfigError(argument, f"labels in [0, {len(classes) - 1}] ({len(classes)} classes)", bad)


def text_teacher(train: tuple[Sequence[str], Sequence[int]], val: tuple[Sequence[str], Sequence[int]] | None,
                 classes: Sequence[str], config: TextTeacherConfig | None = None, *, out: Path | None = None,
                 backend: Backend | None = None, reuse: bool = True, progress: bool = True) -> TextTeacher:
    """MiniLM fine-tuned on ``train`` = ``(transcripts, labels)`` (validated on ``val``, whose best epoch is
    kept), cached under ``$KD_DATA_HOME/teachers/speech-text-minilm-<digest>.safetensors``."""
    config = config or TextTeacherConfig()
    classes = tuple(classes)
    if len(classes) < 2:
        raise ConfigError("classes", "at least 2 intent names", list(classes))
    _check(*train, classes, "train")
    if val is not None:
        _check(*val, classes, "val")
    backend = backend or Backend(device="cpu")
    tokenizer_holder: dict[str, Any] = {}

    def build() -> nn.Module:
        torch.manual_seed(config.seed)
        model, tokenizer_holder["tokenizer"] = load_text_model(len(classes))
        return model

    def fit(model: nn.Module) -> nn.Module:
        tokenizer = tokenizer_holder["tokenizer"]
        datasets = [TextDataset(texts, labels, tokenizer, config.max_length) if texts else None
                    for texts, labels in (train, val or ([], []))]
        phase = Phase("finetune", Objective(Term("ce", cross_entropy, student="logits", target="label")),
                      epochs=config.epochs, optimizer=adamw(config.lr, config.weight_decay), scheduler=cosine_lr,
                      restore_best=datasets[1] is not None)
        distiller = Distiller(model, [phase], backend=backend, batch_size=config.batch_size, seed=config.seed,
                              forward=encoder_forward, collate=TextCollator(tokenizer.pad_token_id or 0),
                              progress=progress)
        with contextlib.ExitStack() as stack:
            folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            distiller.fit(datasets[0], datasets[1], out=folder, config={"role": "speech text teacher",
                                                                        "teacher": config.model_dump()})
        return distiller.student

    data = sha256_bytes(repr((list(train[0]), [int(y) for y in train[1]],
                              None if val is None else (list(val[0]), [int(y) for y in val[1]]))).encode())
    model, note = cached_model(build, fit, "speech-text-minilm", reuse, config=config.model_dump(),
                               classes=list(classes), data=data, minilm=minilm_fingerprint())
    return TextTeacher(model.to(backend.device).eval(), tokenizer_holder["tokenizer"], classes, note)
