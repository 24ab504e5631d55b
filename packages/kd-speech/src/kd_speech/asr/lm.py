"""A small word-level causal transformer LM, built here from a ``transformers`` ``GPT2Config`` (no hub).

The vocabulary is built from training text (normalised by :func:`kd_speech.asr.wer.normalize_text`):
``<pad>``, ``<unk>``, ``<s>``, ``</s>`` and every word seen at least ``min_count`` times. A sentence is
scored as ``log P(w_1 … w_n </s> | <s>)`` in nats; an out-of-vocabulary word is scored as ``<unk>``, so
scores are comparable between hypotheses under one vocabulary, not an open-vocabulary probability.
Sentences longer than the model's context are scored with a sliding window (half-context stride), and
truncated to the context for training.

:func:`fit_lm` is the one training loop (AdamW, shuffled mini-batches, deterministic for a seed on CPU);
:func:`train_lm` runs it with next-word cross-entropy, :mod:`kd_speech.asr.lm_distill` with a KD loss.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from kd_core.errors import CheckpointError, ConfigError
from torch import nn

from kd_speech.asr.wer import normalize_words

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)


class WordVocab:
    """Word ↔ id mapping with ``<pad>`` = 0, ``<unk>`` = 1, ``<s>`` = 2, ``</s>`` = 3."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words: list[str] = list(SPECIALS) + [w for w in dict.fromkeys(words) if w not in SPECIALS]
        self.index = {word: i for i, word in enumerate(self.words)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None,
              keep: Iterable[str] = ()) -> WordVocab:
        """The words of ``texts`` seen at least ``min_count`` times, most frequent first (ties alphabetical).

        ``keep``: texts whose words are always in the vocabulary (first, in order of appearance), whatever their
        count and ``max_size`` (e.g. the in-domain transcripts beside a large general corpus).
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError("min_count", "an integer >= 1", min_count)
        if isinstance(keep, str):
            raise ConfigError("keep", "a list of texts", "a single string")
        kept = [w for w in dict.fromkeys(word for text in keep for word in normalize_words(text)) if w not in SPECIALS]
        counts = Counter(word for text in texts for word in normalize_words(text))
        chosen = set(kept)
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in chosen),
                        key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS) - len(kept))]
        ranked = kept + ranked
        if not ranked:
            raise ConfigError("texts", f"at least one word seen {min_count} time(s)", "no words")
        return cls(ranked)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, text: str | Sequence[str]) -> list[int]:
        """``<s> words </s>`` as ids (text is normalised; a word list is taken as is)."""
        words = normalize_words(text) if isinstance(text, str) else list(text)
        return [self.bos_id, *(self.index.get(w, self.unk_id) for w in words), self.eos_id]


@dataclass(frozen=True)
class LMSize:
    """Transformer size: embedding width, layers, heads, context length, dropout."""

    n_embd: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_positions: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n_embd", "n_layer", "n_head", "n_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "an integer >= 1", value)
        if self.n_embd % self.n_head:
            raise ConfigError("n_head", f"a divisor of n_embd ({self.n_embd})", self.n_head)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", "a number in [0, 1)", self.dropout)
        if self.n_positions < 3:
            raise ConfigError("n_positions", "an integer >= 3 (<s>, a word, </s>)", self.n_positions)


class WordLM(nn.Module):
    """A GPT-2-style causal LM over a :class:`WordVocab` (``transformers.GPT2LMHeadModel`` from a config).

    ``name``: a label for reports (``WordLM.load`` gives the folder's name)."""

    def __init__(self, vocab: WordVocab, size: LMSize | None = None, seed: int = 0, name: str = "") -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.vocab = vocab
        self.size = size or LMSize()
        self.name = name  # what reports call it ("teacher", "distilled-seed0"...); not saved with the weights
        config = GPT2Config(vocab_size=len(vocab), n_positions=self.size.n_positions, n_embd=self.size.n_embd,
                            n_layer=self.size.n_layer, n_head=self.size.n_head, resid_pdrop=self.size.dropout,
                            embd_pdrop=self.size.dropout, attn_pdrop=self.size.dropout,
                            bos_token_id=vocab.bos_id, eos_token_id=vocab.eos_id, pad_token_id=vocab.pad_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = GPT2LMHeadModel(config)

    @property
    def n_positions(self) -> int:
        """The context length in tokens."""
        return self.size.n_positions

    def num_parameters(self) -> int:
        """Distinct parameters (tied input/output embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits, shape (batch, length, vocab)."""
        return self.model(input_ids=ids, attention_mask=attention_mask).logits

    def batch(self, texts: Sequence[str | Sequence[str]],
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids (truncated to the context) and their attention mask."""
        rows = [self.vocab.encode(text)[: self.n_positions] for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.vocab.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        device = device if device is not None else next(self.parameters()).device
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def _ids_logprob(self, ids: list[int]) -> float:
        device = next(self.parameters()).device
        context, stride = self.n_positions, max(1, self.n_positions // 2)
        total, scored, start = 0.0, 1, 0  # scored: index of the next target not yet counted
        while scored < len(ids):
            window = torch.tensor(ids[start: start + context], device=device).unsqueeze(0)
            logp = F.log_softmax(self(window).float(), dim=-1)[0]
            targets = window[0, 1:]
            picked = logp[:-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            first = scored - start - 1  # position (in picked) of the first new target
            total += float(picked[first:].sum())
            scored = start + window.shape[1]
            start += stride
        return total

    def sentence_logprob(self, text: str | Sequence[str]) -> float:
        """``log P(words </s> | <s>)`` in nats (text normalised; a word list is taken as is)."""
        was_training = self.training
        self.eval()
        try:
            return self._ids_logprob(self.vocab.encode(text))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sentence_logprobs(self, texts: Sequence[str | Sequence[str]], batch_size: int = 64) -> list[float]:
        """:meth:`sentence_logprob` of each text, batched where they fit the context."""
        was_training = self.training
        self.eval()
        try:
            out: list[float] = [0.0] * len(texts)
            encoded = [self.vocab.encode(t) for t in texts]
            short = [i for i, ids in enumerate(encoded) if len(ids) <= self.n_positions]
            for i in set(range(len(texts))) - set(short):
                out[i] = self._ids_logprob(encoded[i])
            for begin in range(0, len(short), batch_size):
                chunk = short[begin: begin + batch_size]
                ids, mask = self.batch([texts[i] for i in chunk])
                token_logp = _target_logprobs(self(ids, mask), ids, mask)
                for row, i in enumerate(chunk):
                    out[i] = float(token_logp[row].sum())
            return out
        finally:
            self.train(was_training)

    def perplexity(self, texts: Sequence[str], batch_size: int = 64) -> float:
        """exp(−Σ log P / Σ predicted tokens) over ``texts``, ``</s>`` included."""
        if not texts:
            raise ConfigError("texts", "at least one text", 0)
        logps = self.sentence_logprobs(texts, batch_size)
        tokens = sum(len(self.vocab.encode(t)) - 1 for t in texts)
        return math.exp(-math.fsum(logps) / tokens)

    def save(self, folder: str | Path) -> None:
        """Write the model (``save_pretrained``), its vocabulary and size to ``folder``."""
        from transformers.utils import logging as hf_logging

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # (no "Writing model shards" bar in the middle of a study's output)
        try:
            self.model.save_pretrained(folder)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        (folder / "vocab.json").write_text(json.dumps({"words": self.vocab.words, "size": vars(self.size)}))

    @classmethod
    def load(cls, folder: str | Path) -> WordLM:
        """Read a model written by :meth:`save`."""
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging as hf_logging

        folder = Path(folder)
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # (no "Loading weights" bar)
        try:
            meta = json.loads((folder / "vocab.json").read_text())
            lm = cls(WordVocab(meta["words"]), LMSize(**meta["size"]), name=folder.name)
            lm.model = GPT2LMHeadModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError("folder", "a WordLM folder written by WordLM.save", str(folder),
                                  hint=str(err).splitlines()[0] if str(err) else "") from None
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        return lm


def _target_logprobs(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log P of each next token (batch, length − 1), zero at padding."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return picked * mask[:, 1:].to(picked.dtype)


def next_token_targets(ids: torch.Tensor, mask: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """The targets for positions 0 … L−2: the next id, ``ignore_index`` at padding."""
    targets = ids[:, 1:].clone()
    targets[mask[:, 1:] == 0] = ignore_index
    return targets


#: ``loss(lm, ids, mask) -> scalar`` for one batch
BatchLoss = Callable[["WordLM", torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(lm: WordLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-word cross-entropy over the non-padding tokens."""
    logits = lm(ids, mask)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                           next_token_targets(ids, mask).reshape(-1), ignore_index=-100)


@dataclass(frozen=True)
class TrainConfig:
    """AdamW settings and schedule for :func:`fit_lm`."""

    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "an integer >= 1", value)
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (
                    name == "lr" and value == 0):
                raise ConfigError(name, "a finite number >= 0" + (" (and > 0)" if name == "lr" else ""), value)


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("texts", "a list of sentences", "a single string")
    kept = [t for t in texts if normalize_words(t)]
    if not kept:
        raise ConfigError("texts", "at least one non-empty sentence", len(texts))
    return kept


def fit_lm(lm: WordLM, texts: Sequence[str], loss: BatchLoss = cross_entropy_loss,
           config: TrainConfig | None = None) -> list[float]:
    """Train ``lm`` in place on ``texts`` with ``loss``; returns the mean loss of each epoch.

    Deterministic for ``config.seed`` on CPU (batch order and dropout draw from that seed).
    """
    config = config or TrainConfig()
    kept = _texts(texts)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    lm.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for _ in range(config.epochs):
            total, batches = 0.0, 0
            permutation = torch.randperm(len(kept), generator=order).tolist()
            for begin in range(0, len(kept), config.batch_size):
                ids, mask = lm.batch([kept[i] for i in permutation[begin: begin + config.batch_size]])
                value = loss(lm, ids, mask)
                if not torch.isfinite(value):
                    raise ConfigError("loss", "a finite training loss", float(value),
                                      hint="lower lr, or check the texts")
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(lm.parameters(), config.grad_clip)
                optimizer.step()
                total, batches = total + float(value.detach()), batches + 1
            history.append(total / batches)
    lm.eval()
    return history


def train_lm(texts: Sequence[str], size: LMSize | None = None, config: TrainConfig | None = None,
             vocab: WordVocab | None = None, min_count: int = 1) -> WordLM:
    """Build a vocabulary from ``texts`` (unless given), a :class:`WordLM` of ``size``, and train it (CE)."""
    config = config or TrainConfig()
    kept = _texts(texts)
    lm = WordLM(vocab or WordVocab.build(kept, min_count=min_count), size, seed=config.seed)
    fit_lm(lm, kept, cross_entropy_loss, config)
    return lm


# -- the same LM trained through kd-core's Distiller (a Study's arms) -----------------------------------------

class SentenceDataset(torch.utils.data.Dataset):
    """Sentences as ``<s> words </s>`` ids (truncated to ``max_length``): items ``{"input_ids", "split"}``.

    ``split`` names the split the items come from (``"train"``, ``"val"``, ``"test"``), so that an evaluator
    fed collated batches knows what it scores.
    """

    def __init__(self, vocab: WordVocab, texts: Sequence[str], split: str = "train",
                 max_length: int | None = None) -> None:
        kept = _texts(texts)
        self.texts, self.split = kept, split
        self.ids = [torch.tensor(vocab.encode(t)[: max_length], dtype=torch.long) for t in kept]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"input_ids": self.ids[index], "split": self.split}


def collate_sentences(items: Sequence[dict[str, object]], pad_id: int = 0) -> dict[str, object]:
    """Right-padded ``input_ids`` and ``attention_mask``; ``label``: the next-word targets of every non-padding
    position, flattened in row order (what :func:`lm_forward`'s logits line up with); ``split``."""
    if not items:
        raise ConfigError("items", "at least one sentence", 0)
    rows = [item["input_ids"] for item in items]
    width = max(len(row) for row in rows)  # type: ignore[arg-type]
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row  # type: ignore[arg-type]
        mask[i, : len(row)] = 1  # type: ignore[arg-type]
    targets = ids[:, 1:][mask[:, 1:].bool()]
    return {"input_ids": ids, "attention_mask": mask, "label": targets, "split": items[0].get("split", "")}


def lm_forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Distiller forward: ``{"logits"}`` of every predicting position (those whose next token is not padding),
    flattened to (tokens, vocab) in the order of ``batch["label"]``; teacher and student line up position by
    position, so a KD term compares their next-word distributions word by word."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = model(ids, mask)[:, :-1]
    return {"logits": logits[mask[:, 1:].bool()]}


@torch.no_grad()
def token_nll(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
              forward: Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lm_forward
              ) -> tuple[float, int]:
    """Mean next-word negative log-likelihood (nats per predicted token, ``</s>`` included) over ``batches`` and
    the number of tokens; the model is put in eval mode and back."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            logits = forward(model, batch)["logits"].float()
            total += float(F.cross_entropy(logits, batch["label"], reduction="sum"))
            count += int(batch["label"].numel())
    finally:
        model.train(was_training)
    if count == 0:
        raise ConfigError("batches", "at least one predicted token", 0)
    return total / count, count
