"""How close a general-distilled encoder is to its teacher on held-out text, without a learned projection.

TinyBERT (Jiao et al., arXiv:1909.10351) trains its embedding and hidden-state terms through a projection
W_h that is thrown away after distillation, so those terms cannot score a saved student. Two measures need
none: the attention term itself (pre-softmax scores, head by head, padding masked; mean over the mapped
layers) and the linear CKA (Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network Representations
Revisited", ICML 2019) of each student layer's token states with its mapped teacher layer's (mean).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from kd_core.taps import TapSet
from torch import nn

from kd_nlu.tinybert.layers import check_layer_map, encoder_layout
from kd_nlu.tinybert.objectives import intermediate_objective, objective_values

Evaluate = Callable[[nn.Module, Iterable[Mapping[str, Any]], Any], dict[str, float]]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices over the same rows: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), centred (1 when
    one is a rotation and scaling of the other; no projection needed across widths)."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-12))


def general_evaluator(teacher_of: Callable[[], nn.Module], layer_map: list[int] | None = None,
                      average_heads: bool = False) -> Evaluate:
    """A task evaluator of agreement with ``teacher_of()``: ``attention_mse``, the attention-score MSE per mapped
    layer (mean; heads averaged when asked or when the head counts differ), and ``hidden_cka``, the linear CKA
    of the mapped hidden states (mean; padding left out)."""
    def evaluate(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Any) -> dict[str, float]:
        batches = list(batches)
        teacher = teacher_of().to(next(model.parameters()).device)
        s, t = encoder_layout(model), encoder_layout(teacher)
        mapping = check_layer_map(layer_map, s.num_layers, t.num_layers)
        attention = intermediate_objective(model, teacher, layer_map=mapping, parts=["attention"],
                                           average_heads=average_heads or s.num_heads != t.num_heads)
        values = objective_values(attention, model, teacher, batches, forward)
        taps = [s.layer_tap(m) for m in range(1, len(mapping) + 1)], [t.layer_tap(g) for g in mapping]
        s_taps, t_taps = TapSet(model, taps[0]), TapSet(teacher, taps[1])
        features: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [([], []) for _ in mapping]
        model.eval()
        with torch.no_grad():
            for batch in batches:
                keep = batch["attention_mask"].bool()
                s_out, t_out = s_taps.run(forward, model, batch), t_taps.run(forward, teacher, batch)
                for k, (a, b) in enumerate(zip(*taps, strict=True)):
                    features[k][0].append(s_out[a][keep].cpu())
                    features[k][1].append(t_out[b][keep].cpu())
        cka = [linear_cka(torch.cat(x), torch.cat(y)) for x, y in features]
        return {"attention_mse": sum(values[f"attn.{m}"] for m in range(1, len(mapping) + 1)) / len(mapping),
                "hidden_cka": sum(cka) / len(cka)}
    return evaluate
