"""A BERT over vq-wav2vec tokens, built from a config and pre-trained by masked-token prediction.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453), section 4, with BERT's masked language model (Devlin et al., NAACL 2019, arXiv 1810.04805):
15 % of the code positions are chosen; of those, 80 % become ``[MASK]``, 10 % a random code and 10 % stay; the
model predicts the original codes there. The model is transformers' ``BertForMaskedLM`` built from a
``BertConfig`` (nothing is downloaded) whose vocabulary is a :class:`SpeechVocabulary`, stored in the config so
that ``save_pretrained`` / ``load_speech_bert`` round-trip both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from kd_core.errors import CheckpointError, ConfigError, NonFiniteLossError
from transformers import BertConfig, BertForMaskedLM

from kd_speech.models._checks import non_negative_float, positive_float, positive_int, probability
from kd_speech.models.speech_vocab import SpeechVocabulary
from kd_speech.models.vq_wav2vec import VqWav2Vec

__all__ = ["build_speech_bert", "load_speech_bert", "mask_tokens", "masked_batches", "pretrain_speech_bert",
           "shuffled_batches", "speech_bert_config", "speech_input_ids"]

IGNORE_INDEX = -100


def speech_bert_config(vocab: SpeechVocabulary, hidden_size: int = 256, num_layers: int = 4, num_heads: int = 4,
                       intermediate_size: int | None = None, max_positions: int = 512,
                       dropout: float = 0.1) -> BertConfig:
    """A ``BertConfig`` over ``vocab`` (``intermediate_size`` defaults to ``4 * hidden_size``)."""
    if not isinstance(vocab, SpeechVocabulary):
        raise ConfigError("vocab", "a SpeechVocabulary", type(vocab).__name__)
    positive_int("hidden_size", hidden_size)
    positive_int("num_layers", num_layers)
    positive_int("num_heads", num_heads)
    positive_int("max_positions", max_positions, minimum=3)
    probability("dropout", dropout)
    if hidden_size % num_heads:
        raise ConfigError("hidden_size", f"a multiple of num_heads ({num_heads})", hidden_size)
    intermediate = 4 * hidden_size if intermediate_size is None else positive_int("intermediate_size",
                                                                                  intermediate_size)
    return BertConfig(vocab_size=vocab.size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=num_heads, intermediate_size=intermediate,
                      max_position_embeddings=max_positions, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout, type_vocab_size=1, pad_token_id=vocab.PAD,
                      **vocab.to_config())


def build_speech_bert(config: BertConfig) -> BertForMaskedLM:
    """A freshly initialised ``BertForMaskedLM`` of a ``speech_bert_config``."""
    SpeechVocabulary.from_config(config)  # refuses a config without the speech vocabulary
    return BertForMaskedLM(config)


def load_speech_bert(path: str | Path) -> tuple[BertForMaskedLM, SpeechVocabulary]:
    """A speech BERT saved with ``save_pretrained`` and its vocabulary (local files only)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(str(path), "a folder written by save_pretrained (with config.json)", "no config.json")
    model = BertForMaskedLM.from_pretrained(path, local_files_only=True)
    return model, SpeechVocabulary.from_config(model.config)


def mask_tokens(input_ids: torch.Tensor, vocab: SpeechVocabulary, mask_probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked input ids, labels)`` for masked-token prediction; labels are -100 except at chosen positions.

    Only code positions (not ``[PAD]``/``[CLS]``/``[SEP]``/``[UNK]``) are chosen, each with ``mask_probability``
    and at least one per sequence that has codes; 80 % of them become ``[MASK]``, 10 % a random code, 10 % stay.
    """
    probability("mask_probability", mask_probability, closed=True)
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ConfigError("input_ids", "an integer tensor [B, L]", f"{input_ids.dtype} {tuple(input_ids.shape)}")
    if vocab.size <= vocab.NUM_SPECIAL:
        raise ConfigError("vocab", "at least one code", vocab.size)
    shape = input_ids.shape

    def uniform() -> torch.Tensor:
        return torch.rand(shape, generator=generator).to(input_ids.device)

    candidates = input_ids >= vocab.NUM_SPECIAL
    chosen = (uniform() < mask_probability) & candidates
    need = candidates.any(1) & ~chosen.any(1)
    if bool(need.any()):
        pick = torch.where(candidates, uniform(), torch.full(shape, -1.0, device=input_ids.device)).argmax(1)
        rows = need.nonzero(as_tuple=True)[0]
        chosen[rows, pick[rows]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    roll = uniform()
    random_codes = torch.randint(vocab.NUM_SPECIAL, vocab.size, shape, generator=generator).to(input_ids.device)
    masked = torch.where(chosen & (roll < 0.8), torch.full_like(input_ids, vocab.MASK), input_ids)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_codes, masked)
    return masked, labels


def speech_input_ids(vq_model: VqWav2Vec, waves: Sequence[torch.Tensor], vocab: SpeechVocabulary,
                     max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of waveforms: the vq model's combined tokens, ``[CLS]`` first, padded."""
    if vq_model.num_tokens != vocab.num_codes:
        raise ConfigError("vocab", f"a vocabulary of the vq model's {vq_model.num_tokens} tokens", vocab.num_codes)
    device = next(vq_model.parameters()).device
    return vocab.batch([vq_model.tokens(wave.to(device)).cpu() for wave in waves], max_length=max_length)


def shuffled_batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of indices into ``size`` items, drawn without replacement: a fresh ``generator``
    permutation is appended whenever fewer than ``batch_size`` indices are left (so batches may span passes)."""
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order += torch.randperm(size, generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        yield batch


def masked_batches(sequences: Sequence[torch.Tensor | Sequence[int]], vocab: SpeechVocabulary, batch_size: int,
                   generator: torch.Generator, max_length: int | None = None, mask_probability: float = 0.15
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless masked-LM batches ``(indices, masked input_ids, attention_mask, labels)`` of ``sequences``: the
    indices from :func:`shuffled_batches`, then the masks from :func:`mask_tokens`, both drawn from ``generator``."""
    for batch in shuffled_batches(len(sequences), batch_size, generator):
        input_ids, attention_mask = vocab.batch([sequences[i] for i in batch], max_length=max_length)
        masked, labels = mask_tokens(input_ids, vocab, mask_probability, generator=generator)
        yield batch, masked, attention_mask, labels


def pretrain_speech_bert(model: BertForMaskedLM, sequences: Sequence[torch.Tensor | Sequence[int]],
                         vocab: SpeechVocabulary, steps: int, *, lr: float = 5e-4, batch_size: int = 8,
                         max_length: int | None = None, mask_probability: float = 0.15, weight_decay: float = 0.01,
                         seed: int = 0) -> list[float]:
    """Masked-token pre-training with AdamW for ``steps`` updates on vq token ``sequences``; the loss per step.

    Batches are drawn without replacement (a fresh shuffle every pass); masks, dropout and order come from
    ``seed`` and the caller's RNG state is restored afterwards. The model is left in the mode it came in.
    """
    if not isinstance(model, BertForMaskedLM):
        raise ConfigError("model", "a transformers BertForMaskedLM", type(model).__name__)
    if not isinstance(sequences, Sequence) or not sequences:
        raise ConfigError("sequences", "a non-empty sequence of vq token sequences", type(sequences).__name__)
    if model.config.vocab_size != vocab.size:
        raise ConfigError("vocab", f"a vocabulary of the model's {model.config.vocab_size} ids", vocab.size)
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    non_negative_float("weight_decay", weight_decay)
    limit = int(model.config.max_position_embeddings)
    max_length = limit if max_length is None else min(positive_int("max_length", max_length, minimum=3), limit)
    device = next(model.parameters()).device
    was_training = model.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        batches = masked_batches(sequences, vocab, batch_size, generator, max_length, mask_probability)
        model.train()
        for step in range(steps):
            _, masked, attention_mask, labels = next(batches)
            out = model(input_ids=masked.to(device), attention_mask=attention_mask.to(device),
                        labels=labels.to(device))
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError("loss", "a finite value", value, hint=f"at step {step}; try a lower lr")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            losses.append(value)
    model.train(was_training)
    return losses
