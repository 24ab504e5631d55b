"""Classifiers read off a lower encoder layer: S2's frozen teacher and S1's self-distillation student.

- ``LayerClassifier`` (Park & Park, "Deep Model Compression Also Helps Models Capture Ambiguity",
  ACL 2023, arXiv:2306.07061): a frozen fine-tuned trunk and the probe of layer ``ℓ_d``; its logits
  are the lower-layer distribution distilled into the pruned model.
- ``SelfDistillModel`` (Park, Jeong, Cho & Park, "Self-Knowledge Distillation for Learning Ambiguity",
  arXiv:2406.09719): a classifier plus a second head on a lower layer ``ℓ`` that reads detached
  features. Its forward returns the classifier's own output; the lower head's logits are a second
  output that kd-core reads by tap (``lower_head``), and ``pair`` exposes ``[top, sg(lower)]`` so that
  one objective term can distil the lower distribution into the top classifier.

Both read the lower layer's output with a kd-core ``TapSet`` (the encoder is never edited).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from kd_core.losses import kl_divergence
from kd_core.taps import TapSet
from torch import nn

from kd_nlu.ambiguity.heads import Pooling, ProbeHead
from kd_nlu.ambiguity.layers import check_layer, layer_paths


def _call(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
          token_type_ids: torch.Tensor | None):
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    return model(**kwargs)


class LayerClassifier(nn.Module):
    """``head`` applied to layer ``layer`` (1-based) of ``model``; returns the head's logits."""

    def __init__(self, model: nn.Module, layer: int, head: ProbeHead) -> None:
        super().__init__()
        paths = layer_paths(model)
        self.layer = check_layer(layer, len(paths))
        self.model, self.head = model, head
        self._path = paths[self.layer - 1]
        self._taps = TapSet(model, [self._path])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the layer-``layer`` head."""
        with self._taps.capture() as captured:
            _call(self.model, input_ids, attention_mask, token_type_ids)
        return self.head(captured[self._path], attention_mask)


class LogitPair(nn.Module):
    """Stacks the top logits with the stop-gradient lower logits, ``[N, 2, C]``: the tap a self-KD term reads."""

    def forward(self, top: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        """``[top, lower.detach()]`` along a new axis 1."""
        return torch.stack([top, lower.detach()], dim=1)


class SelfDistillModel(nn.Module):
    """A sequence classifier with a detached probe head on lower layer ``layer`` (strictly below the top)."""

    def __init__(self, model: nn.Module, layer: int, num_labels: int, pooling: Pooling = "cls") -> None:
        super().__init__()
        paths = layer_paths(model)
        self.layer = check_layer(layer, len(paths), below_top=True)
        self.model = model
        self.lower_head = ProbeHead(model.config.hidden_size, num_labels, pooling, detach=True)
        self.pair = LogitPair()
        self._path = paths[self.layer - 1]
        self._taps = TapSet(model, [self._path])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):
        """The classifier's output (with ``.logits``); ``lower_head`` and ``pair`` run as side outputs."""
        with self._taps.capture() as captured:
            output = _call(self.model, input_ids, attention_mask, token_type_ids)
        lower = self.lower_head(captured[self._path], attention_mask)
        self.pair(output.logits, lower)
        return output


def lower_layer_kl(pair: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(sg[p_ℓ] ‖ p_L)`` from a ``LogitPair`` tap ``[N, 2, C]`` (× T², kd-core's forward KL)."""
    return kl_divergence(pair[:, 0], pair[:, 1], temperature=temperature, direction="forward")


def head_lr_adamw(head: nn.Module, lr: float, head_lr: float,
                  weight_decay: float = 0.0) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """An AdamW factory (for ``Phase(optimizer=...)``) giving ``head``'s parameters their own learning rate.

    A linear probe head on detached features learns far too slowly at a fine-tuning learning rate (5e-5):
    the lower head must be a trained probe for its distribution to mean anything.
    """
    head_ids = {id(p) for p in head.parameters()}

    def factory(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        groups = [{"params": [p for p in params if id(p) not in head_ids], "lr": lr},
                  {"params": [p for p in params if id(p) in head_ids], "lr": head_lr}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)

    return factory
