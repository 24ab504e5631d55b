"""Tiny, file-free text resources for tests and examples: a 3-class toy task, a tokenizer, random BERTs.

Nothing is read from disk or downloaded: the vocabulary, texts and models are built here, so a method's
end-to-end path can be exercised in seconds.
"""

from __future__ import annotations

import random

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from kd_nlu.data.text import TextDataset

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


def tiny_resources(teachers: int = 1):
    """Tiny splits, tokenizer, random BERT teachers and a student builder, as ``TextResources``."""
    from kd_nlu.methods.dcs import TextResources

    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    splits = {name: TextDataset(*toy_texts(n, seed), tokenizer, max_length=8)
              for name, n, seed in (("train", 36, 0), ("val", 12, 1), ("test", 12, 2))}
    return TextResources(splits=splits, num_classes=3,
                         teachers={f"t{k}": tiny_bert(100 + k).eval() for k in range(teachers)},
                         build_student=lambda seed: tiny_bert(seed), pad_token_id=0)
