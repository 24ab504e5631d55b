"""The speech student of two-stage textual KD: the PT-KD wrapper and the fine-tuned intent model.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105):

- :class:`PTKDModel` (stage 1): one masked-LM pass of the speech BERT over (masked) vq-token ids gives both the
  vq-token MLM loss and the utterance ``[CLS]`` vector (last hidden state at position 0) that PT-KD matches to the
  frozen text encoder's ``[CLS]`` (:func:`~kd_speech.slu.losses.pt_kd_loss`); an optional linear projector maps
  it to the text width.
- :class:`SpeechIntentModel` (stage 2): the speech BERT, frozen and run under ``torch.no_grad`` as in the reference
  code, its hidden states augmented in training, then a :class:`~kd_speech.slu.head.DS2Head`.

The speech BERT is any transformers BERT (``BertForMaskedLM`` from ``kd_speech.models.build_speech_bert``, or a
``BertModel``); only its encoder (``base_model``) is used for fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.slu.augment import HiddenAugment, TokenSpanMask
from kd_speech.slu.head import DS2Head
from kd_speech.slu.losses import pt_kd_loss

__all__ = ["PTKDModel", "SpeechIntentModel"]


def _batch_ids(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        received = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ConfigError("batch", "a mapping with 'input_ids' (and 'attention_mask')", received)
    input_ids = batch["input_ids"]
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ConfigError("batch['input_ids']", "an integer tensor [B, L] of vq-token ids ([CLS] first)",
                          tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else input_ids)
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    elif not isinstance(mask, torch.Tensor) or mask.shape != input_ids.shape:
        raise ConfigError("batch['attention_mask']", f"a mask of shape {tuple(input_ids.shape)}",
                          tuple(mask.shape) if isinstance(mask, torch.Tensor) else mask)
    return input_ids, mask


def _encoder(speech_bert: nn.Module) -> nn.Module:
    encoder = getattr(speech_bert, "base_model", None)
    if not isinstance(encoder, nn.Module) or not hasattr(getattr(speech_bert, "config", None), "hidden_size"):
        raise ConfigError("speech_bert", "a transformers BERT (BertForMaskedLM or BertModel)",
                          type(speech_bert).__name__)
    return encoder


class SpeechIntentModel(nn.Module):
    """Speech BERT + (augmentation) + :class:`DS2Head`; ``forward(batch)`` gives ``logits``, ``cls``, ``hidden``.

    With ``freeze_encoder`` (the paper's setting) the encoder's parameters stop requiring gradients, it runs under
    ``torch.no_grad`` and it stays in eval mode (no dropout) unless ``encoder_dropout`` (the reference code leaves
    it in train mode). ``token_mask`` is applied to the input ids and ``hidden_augment`` to the hidden states, in
    training mode only. ``hidden`` in the output is what the head read (augmented in training).

    ``cache_hidden``: a frozen encoder in eval mode is a fixed function of the token ids, so its hidden states are
    kept per utterance (keyed by its ids) and computed once: later epochs run the head alone. Not while
    ``token_mask`` changes the ids (training with masking) or with ``encoder_dropout``; the cache is not part of
    the state dict.
    """

    def __init__(self, speech_bert: nn.Module, head: DS2Head, freeze_encoder: bool = True,
                 token_mask: TokenSpanMask | None = None, hidden_augment: HiddenAugment | None = None,
                 encoder_dropout: bool = False, cache_hidden: bool = False) -> None:
        super().__init__()
        self.encoder = _encoder(speech_bert)
        if not isinstance(head, nn.Module):
            raise ConfigError("head", "an nn.Module (a DS2Head)", type(head).__name__)
        width = int(speech_bert.config.hidden_size)
        if isinstance(head, DS2Head) and head.in_dim != width:
            raise ConfigError("head", f"a head over the encoder's width {width}", head.in_dim)
        if token_mask is not None and not isinstance(token_mask, TokenSpanMask):
            raise ConfigError("token_mask", "a TokenSpanMask or None", type(token_mask).__name__)
        if hidden_augment is not None and not isinstance(hidden_augment, HiddenAugment):
            raise ConfigError("hidden_augment", "a HiddenAugment or None", type(hidden_augment).__name__)
        self.head, self.token_mask, self.hidden_augment = head, token_mask, hidden_augment
        self.freeze_encoder, self.encoder_dropout = bool(freeze_encoder), bool(encoder_dropout)
        self.cache_hidden = bool(cache_hidden)
        self._hidden_cache: dict[bytes, torch.Tensor] = {}
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.train(self.encoder_dropout and self.training)

    def train(self, mode: bool = True) -> SpeechIntentModel:
        """Set the training mode; a frozen encoder stays in eval mode unless ``encoder_dropout``."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.train(mode and self.encoder_dropout)
        return self

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"logits": [B, C], "cls": [B, H], "hidden": [B, L, H]}`` of ``{"input_ids", "attention_mask"}``."""
        input_ids, mask = _batch_ids(batch)
        masking = self.training and self.token_mask is not None
        if masking:
            input_ids = self.token_mask(input_ids)
        if self.cache_hidden and self.freeze_encoder and not self.encoder_dropout and not masking:
            hidden = self._cached(input_ids, mask)
        else:
            hidden = self._encode(input_ids, mask)
        cls = hidden[:, 0]
        if self.training and self.hidden_augment is not None:
            hidden = self.hidden_augment(hidden, mask)
        return {"logits": self.head(hidden, mask), "cls": cls, "hidden": hidden}


    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the hidden-state cache behind (it is rebuilt on use)."""
        state = super().__getstate__()
        return {**state, "_hidden_cache": {}}

    def _encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state

    def _cached(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's hidden states of the batch, from the cache where it holds the row's ids."""
        lengths = mask.sum(1).tolist()
        keys = [input_ids[row, :n].cpu().numpy().tobytes() for row, n in enumerate(lengths)]
        missing = [row for row, key in enumerate(keys) if key not in self._hidden_cache]
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            fresh = self._encode(input_ids[rows], mask[rows])
            for i, row in enumerate(missing):
                self._hidden_cache[keys[row]] = fresh[i, : lengths[row]].detach()
        width = int(self.encoder.config.hidden_size)
        hidden = torch.zeros(*input_ids.shape, width, device=input_ids.device,
                             dtype=next(iter(self._hidden_cache.values())).dtype)
        for row, key in enumerate(keys):
            hidden[row, : lengths[row]] = self._hidden_cache[key]
        return hidden


class PTKDModel(nn.Module):
    """The PT-KD stage's student: MLM loss and utterance ``[CLS]`` of a speech ``BertForMaskedLM`` in one pass.

    ``text_dim``: the text encoder's width; when it differs from the speech width a linear ``projector`` (trained
    with the student) maps the speech ``[CLS]`` to it in :meth:`loss`.
    """

    def __init__(self, speech_bert: nn.Module, text_dim: int | None = None) -> None:
        super().__init__()
        _encoder(speech_bert)
        if not hasattr(speech_bert, "cls"):  # transformers' MLM head of BertForMaskedLM
            raise ConfigError("speech_bert", "a BertForMaskedLM (with its masked-LM head)", type(speech_bert).__name__)
        self.speech_bert = speech_bert
        width = int(speech_bert.config.hidden_size)
        if text_dim is not None and (isinstance(text_dim, bool) or not isinstance(text_dim, int) or text_dim < 1):
            raise ConfigError("text_dim", "the text encoder's width (an integer >= 1) or None", text_dim)
        self.projector = nn.Linear(width, text_dim) if text_dim is not None and text_dim != width else None

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{"cls", "hidden", "mlm_logits"}`` and, when the batch has ``labels`` (-100 = ignore), ``"mlm_loss"``."""
        input_ids, mask = _batch_ids(batch)
        labels = batch.get("labels")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != input_ids.shape):
            raise ConfigError("batch['labels']", f"MLM labels of shape {tuple(input_ids.shape)}",
                              tuple(labels.shape) if isinstance(labels, torch.Tensor) else labels)
        out = self.speech_bert(input_ids=input_ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        result = {"cls": hidden[:, 0], "hidden": hidden, "mlm_logits": out.logits}
        if labels is not None:
            result["mlm_loss"] = out.loss
        return result

    def loss(self, batch: Mapping[str, Any], text_cls: torch.Tensor, kd_weight: float = 1.0,
             mlm_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(mlm_weight * MLM + kd_weight * PT-KD, {"mlm": ..., "pt_kd": ...})`` for a batch with ``labels``.

        ``text_cls`` is the frozen text encoder's ``[CLS]`` of the transcripts, ``[B, text_dim]``.
        """
        for name, value in (("kd_weight", kd_weight), ("mlm_weight", mlm_weight)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(name, "a finite number >= 0", value)
        if not isinstance(batch, Mapping) or batch.get("labels") is None:
            raise ConfigError("batch['labels']", "MLM labels (e.g. from kd_speech.models.mask_tokens)", None)
        out = self(batch)
        kd = pt_kd_loss(out["cls"], text_cls, self.projector)
        mlm = out["mlm_loss"]
        return mlm_weight * mlm + kd_weight * kd, {"mlm": mlm, "pt_kd": kd}
