"""Tiny text resources for tests and examples: a 3-class toy task, a tokenizer, random BERTs.

Nothing is downloaded: the vocabulary, texts and models are built here (``toy_study_files`` writes them as a
CSV and a Hugging Face directory), so a method's end-to-end path runs through the CLI in seconds.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog", "bird", "red", "blue", "green", "run", "sit",
         "fly", "the", "a", "very", "small"]
WORDS = [["cat", "dog", "bird"], ["red", "blue", "green"], ["run", "sit", "fly"]]


def toy_texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Three classes of short texts: two words of the class's list around a filler word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 3
        words = [rng.choice(WORDS[y]), rng.choice(["the", "a", "very", "small"]), rng.choice(WORDS[y])]
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


def tiny_bert(seed: int, layers: int = 2) -> nn.Module:
    """A random 3-class BERT classifier (hidden 16, eager attention) over ``VOCAB``."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=32, num_labels=3, attn_implementation="eager"))


def toy_study_files(folder: Path, rows: int = 60, layers: int = 2) -> list[str]:
    """A toy CSV (``toy_texts``) and a tiny BERT teacher directory with its tokenizer in ``folder``; returns the
    ``--set`` arguments that point a text study recipe at them at toy size (1-layer, 16-wide student)."""

    from transformers import BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts, labels = toy_texts(rows, seed=0)
    csv = folder / "toy.csv"
    csv.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(texts, labels, strict=True)) + "\n")
    teacher = folder / "teacher"
    if not (teacher / "config.json").is_file():
        model = tiny_bert(100, layers=layers)
        model.config.id2label, model.config.label2id = {0: "0", 1: "1", 2: "2"}, {"0": 0, "1": 1, "2": 2}
        model.save_pretrained(teacher)
        BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(teacher)
    settings = {"data.source": f"csv:{csv}", "data.max_length": 8, "data.val_fraction": 0.2,
                "data.test_fraction": 0.2, "teacher.model": f"hf:{teacher}", "teacher.trained": "false",
                "teacher.epochs": 1, "teacher.lr": 0.001, "teacher.batch_size": 12, "student.model": "small",
                "student.layers": 1, "student.hidden": 16, "student.intermediate": 32, "student.lr": 0.001,
                "student.batch_size": 12, "seeds": "[0]", "latency_iterations": 0}
    return [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
