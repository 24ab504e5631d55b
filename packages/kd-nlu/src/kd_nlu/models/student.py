"""TinyBERT-style students: a smaller BertConfig built from the teacher's, saved and reloaded with transformers.

The student keeps the teacher's vocabulary (so both read the same token ids), its head count (so the
attention maps compare head by head) and its maximum length, and shrinks depth, width and FFN width.
It uses eager attention, so its attention modules run the plain QKᵀ path the taps read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kd_core.errors import CheckpointError, ConfigError
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PretrainedConfig,
)


def student_config(teacher: PretrainedConfig, layers: int = 4, hidden: int = 312, intermediate: int = 1200,
                   heads: int | None = None, num_labels: int | None = None, dropout: float = 0.1) -> BertConfig:
    """A BertConfig with the teacher's vocabulary, heads and positions, and the given depth and widths."""
    heads = heads or int(teacher.num_attention_heads)
    for name, value in (("layers", layers), ("hidden", hidden), ("intermediate", intermediate), ("heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"student.{name}", "a positive integer", value)
    if hidden % heads:
        raise ConfigError("student.hidden", f"a multiple of the head count ({heads})", hidden)
    options: dict[str, Any] = {}
    if num_labels is not None:
        options["num_labels"] = num_labels
    return BertConfig(
        vocab_size=int(teacher.vocab_size), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=int(getattr(teacher, "max_position_embeddings", 512)),
        type_vocab_size=int(getattr(teacher, "type_vocab_size", 2)), pad_token_id=getattr(teacher, "pad_token_id", 0),
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, attn_implementation="eager", **options)


def build_student(config: BertConfig, head: bool = True) -> nn.Module:
    """A randomly initialised student: ``BertForSequenceClassification`` with ``head``, else ``BertModel``."""
    return BertForSequenceClassification(config) if head else BertModel(config)


def save_student(model: nn.Module, directory: str | Path) -> Path:
    """``save_pretrained`` into ``directory`` (safetensors + config.json); returns the directory."""
    directory = Path(directory)
    model.save_pretrained(directory)
    return directory


def load_student(directory: str | Path, num_labels: int | None = None) -> nn.Module:
    """Reload a saved student with ``AutoModel`` (or ``AutoModelForSequenceClassification`` with labels)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ConfigError("student", "a directory written by save_pretrained (with config.json)", str(directory))
    if not (directory / "model.safetensors").is_file() and not list(directory.glob("model-*.safetensors")):
        raise CheckpointError("student", "a directory with safetensors weights (pickled .bin files are refused)",
                              str(directory))
    options = {"attn_implementation": "eager", "use_safetensors": True}
    try:
        if num_labels is None:
            return AutoModel.from_pretrained(directory, **options)
        return AutoModelForSequenceClassification.from_pretrained(directory, num_labels=num_labels, **options)
    except (OSError, ValueError) as err:
        raise CheckpointError("student", "a readable save_pretrained directory", str(directory),
                              hint=f"{type(err).__name__}: {err}") from None


def init_embeddings_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, float]:
    """Initialise the student's word, position and token-type embeddings from the teacher's, projected onto the
    top-``h`` right singular vectors of the teacher's word-embedding matrix (``h`` = the student's width).

    With ``E_t = U S Vᵀ`` (``V × d_t``), the student gets ``E_t V_h`` (``= U_h S_h``, the best rank-``h``
    coordinates of every token) and the position/token-type tables projected onto the same basis, so the
    student starts with the teacher's token geometry at a fraction of its parameters. Returns the share of the
    word-embedding energy the ``h`` directions keep. The student's width must not exceed the teacher's.
    """
    t_words = teacher.get_input_embeddings().weight.detach().double()
    s_words = student.get_input_embeddings().weight
    width = s_words.shape[1]
    if s_words.shape[0] != t_words.shape[0]:
        raise ConfigError("student", f"the teacher's vocabulary ({t_words.shape[0]} tokens)", s_words.shape[0])
    if width > t_words.shape[1]:
        raise ConfigError("student.hidden", f"at most the teacher's width ({t_words.shape[1]}) for SVD embeddings",
                          width)
    _, singular, vh = torch.linalg.svd(t_words, full_matrices=False)
    basis = vh[:width].T  # d_t × h
    t_base, s_base = _embedding_module(teacher), _embedding_module(student)
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            source, target = getattr(t_base, name, None), getattr(s_base, name, None)
            if source is None or target is None:
                continue
            rows = min(source.weight.shape[0], target.weight.shape[0])
            target.weight[:rows] = (source.weight[:rows].double() @ basis).to(target.weight.dtype)
    return {"energy_kept": float((singular[:width] ** 2).sum() / (singular ** 2).sum())}


def _embedding_module(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    if embeddings is None:
        raise ConfigError("model", "a BERT-style encoder with an .embeddings module", type(model).__name__)
    return embeddings


def with_tokenizer(task: Any) -> Any:
    """``task`` (a ``kd_core.Task`` of ``kd_nlu.tasks``) whose saved students also hold the tokenizer, so each
    ``<arm>-seed<seed>/model`` folder loads with ``AutoTokenizer`` too (and can be an ``hf:DIR`` teacher)."""
    import dataclasses

    tokenizer = task.extras["tokenizer"]

    def save(model: nn.Module, directory: Path) -> None:
        model.save_pretrained(directory)
        tokenizer.save_pretrained(str(directory))

    return dataclasses.replace(task, save=save)
