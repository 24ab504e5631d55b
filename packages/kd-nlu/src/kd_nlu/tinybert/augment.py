"""TinyBERT's word-replacement augmentation, with neighbours from the teacher's own input embeddings.

TinyBERT (Jiao et al., arXiv:1909.10351, ``data_augmentation.py``) replaces each word with probability
p = 0.4 by one of its top M = 15 candidates: BERT-MLM predictions for single-piece words, GloVe
neighbours for multi-piece words, N augmented copies per example. Offline we have neither GloVe nor an
MLM head (the MiniLM teacher is a sentence encoder), so candidates are the M nearest whole-word tokens,
by cosine similarity, in the teacher's input word-embedding matrix: of the word's own token for a
single-piece word, of the mean of its pieces' embeddings for a multi-piece word (the GloVe role).
Punctuation and numbers are never replaced.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn
from torch.utils.data import Dataset, Subset

from kd_nlu.data.text import TextDataset

_WORD = re.compile(r"[A-Za-z]+|[^\sA-Za-z]+")


class EmbeddingNeighbours:
    """The M nearest whole-word vocabulary tokens to a word, in a model's input word-embedding space."""

    def __init__(self, embeddings: torch.Tensor, tokenizer: Any, top_m: int = 15) -> None:
        if not isinstance(top_m, int) or top_m < 1:
            raise ConfigError("top_m", "a positive integer", top_m)
        vocab = tokenizer.get_vocab()
        if embeddings.dim() != 2 or embeddings.shape[0] < len(vocab):
            raise ConfigError("embeddings", f"a [vocab ≥ {len(vocab)}, dim] matrix", tuple(embeddings.shape))
        self.tokenizer, self.top_m = tokenizer, top_m
        words = sorted((i, w) for w, i in vocab.items() if w.isalpha() and w.isascii() and len(w) > 1)
        self.ids = torch.tensor([i for i, _ in words], dtype=torch.long)
        self.words = [w for _, w in words]
        self.matrix = F.normalize(embeddings.detach().float(), dim=-1)
        self.candidates = self.matrix[self.ids]
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer: Any, top_m: int = 15) -> EmbeddingNeighbours:
        """Neighbours in ``model.get_input_embeddings()``."""
        return cls(model.get_input_embeddings().weight, tokenizer, top_m)

    def __call__(self, word: str) -> list[str]:
        """Up to M replacement words for ``word`` (never the word itself), nearest first."""
        key = word.lower()
        if key not in self._cache:
            ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(key))
            unk = self.tokenizer.unk_token_id
            ids = [i for i in ids if i != unk]
            if not ids:
                self._cache[key] = []
            else:
                query = F.normalize(self.matrix[ids].mean(0), dim=-1)
                scores = self.candidates @ query
                order = scores.argsort(descending=True)[: self.top_m + 1].tolist()
                self._cache[key] = [self.words[i] for i in order if self.words[i] != key][: self.top_m]
        return self._cache[key]


def augment_text(text: str, neighbours: EmbeddingNeighbours, rng: random.Random, p: float = 0.4) -> str:
    """One augmented copy of ``text``: each alphabetic word replaced with probability ``p`` by a neighbour."""
    out = []
    for piece in _WORD.findall(text):
        if piece.isalpha() and rng.random() < p:
            options = neighbours(piece)
            if options:
                piece = rng.choice(options)
        out.append(piece)
    return " ".join(out)


def augment(texts: Sequence[str], labels: Sequence[int], neighbours: EmbeddingNeighbours, copies: int = 20,
            p: float = 0.4, seed: int = 0) -> tuple[list[str], list[int]]:
    """The originals followed by ``copies`` augmented versions of each (same label), deterministically."""
    if len(texts) != len(labels):
        raise ConfigError("labels", f"one label per text ({len(texts)})", len(labels))
    if not isinstance(copies, int) or copies < 0:
        raise ConfigError("copies", "an integer ≥ 0", copies)
    if not 0.0 <= p <= 1.0:
        raise ConfigError("p", "a probability in [0, 1]", p)
    rng = random.Random(seed)
    out_texts, out_labels = list(texts), [int(y) for y in labels]
    for text, label in zip(texts, labels):
        for _ in range(copies):
            out_texts.append(augment_text(text, neighbours, rng, p))
            out_labels.append(int(label))
    return out_texts, out_labels


def split_texts(dataset: Dataset) -> tuple[list[str], list[int] | None, TextDataset]:
    """The texts and labels of a text split (a ``TextDataset`` or a ``Subset`` of one) and the dataset itself."""
    base, rows = (dataset.dataset, list(dataset.indices)) if isinstance(dataset, Subset) else (dataset, None)
    if not isinstance(base, TextDataset):
        raise ConfigError("data", "a text task whose splits are TextDatasets", type(base).__name__)
    rows = rows if rows is not None else list(range(len(base)))
    labels = None if base.labels is None else [base.labels[i] for i in rows]
    return [base.texts[i] for i in rows], labels, base


def augmented(train: Dataset, teacher: nn.Module, copies: int, p: float = 0.4, top_m: int = 15,
              seed: int = 0) -> TextDataset:
    """``train`` followed by ``copies`` word-replacement copies of each text (neighbours in ``teacher``'s input
    embeddings), tokenised like ``train``."""
    texts, labels, base = split_texts(train)
    if copies:
        if labels is None:
            raise ConfigError("data", "labelled texts to augment", "no labels")
        weights = teacher.get_input_embeddings().weight.detach().cpu()
        texts, labels = augment(texts, labels, EmbeddingNeighbours(weights, base.tokenizer, top_m), copies, p, seed)
    return TextDataset(texts, labels, base.tokenizer, base.max_length)
