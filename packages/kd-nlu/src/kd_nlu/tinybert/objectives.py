"""TinyBERT's objectives on kd-core taps: embeddings, pre-softmax attention and hidden states, then predictions.

Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv:1909.10351.
With the layer map g (student layer m ← teacher layer g(m), embeddings 0 ← 0):

- embeddings: MSE(E^S W_e, E^T) on the ``embeddings`` module outputs;
- attention: (1/h) Σ_heads MSE(A^S_m, A^T_g(m)) on the pre-softmax scores QKᵀ/√d_k, recomputed from the
  hidden states that enter each self-attention module (tap ``in:...``) with that module's own query
  and key projections (``kd_core.transformer_losses.AttentionScoreMSE``); the attention weights that HF
  models return are post-softmax, so they are not used;
- hidden: MSE(H^S_m W_h, H^T_g(m)) on each layer's output, W_h learned (one ``fit_dense`` shared by every
  layer and the embeddings, as the reference code does);
- prediction: soft cross-entropy −p_T(z^T/t)·log p_S(z^S/t).

Padded positions are masked out of every intermediate mean (the code zeroes the masked attention
entries but still counts them; with per-batch padding the count would change from batch to batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.losses import soft_cross_entropy
from kd_core.objective import Objective, Term
from kd_core.taps import TapSet
from kd_core.transformer_losses import AttentionScoreMSE, MaskedHiddenMSE
from torch import nn

from kd_nlu.tinybert.layers import check_layer_map, encoder_layout

PARTS = ("embeddings", "attention", "hidden")


def intermediate_terms(student: nn.Module, teacher: nn.Module, layer_map: Sequence[int] | None = None,
                       projection: bool = True, parts: Sequence[str] = PARTS, mask_padding: bool = True,
                       average_heads: bool = False) -> list[Term]:
    """The embedding, attention and hidden-state terms for ``student`` ← ``teacher``.

    ``projection=False`` compares features as they are, which needs equal widths; otherwise a width
    mismatch gets a learned linear map (trained with the student, held by the objective).
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError("parts", f"a non-empty subset of {list(PARTS)}", list(parts))
    s, t = encoder_layout(student), encoder_layout(teacher)
    mapping = check_layer_map(layer_map, s.num_layers, t.num_layers)
    fit_dense = _projection(s.hidden_size, t.hidden_size, projection, "hidden")
    fit_embed = fit_dense if s.embedding_size == s.hidden_size else _projection(
        s.embedding_size, t.embedding_size, projection, "embeddings")
    inputs = {"mask": "attention_mask"} if mask_padding else None  # the padding mask, from every batch
    modules = dict(student.named_modules()), dict(teacher.named_modules())
    terms: list[Term] = []
    owned: set[int] = set()

    def feature_loss(projection: nn.Module | None) -> MaskedHiddenMSE:
        # the first term that uses a projection owns it; later ones share it (held once, trained once)
        if projection is None or id(projection) in owned:
            return MaskedHiddenMSE(shared=projection)
        owned.add(id(projection))
        return MaskedHiddenMSE(projection)

    if "embeddings" in parts:
        terms.append(Term("emb", feature_loss(fit_embed), student=s.embeddings, teacher=t.embeddings,
                          inputs=inputs))
    for m, g in enumerate(mapping, start=1):
        if "attention" in parts:
            loss = AttentionScoreMSE(modules[0][s.attention[m - 1]], modules[1][t.attention[g - 1]],
                                     average_heads=average_heads)
            terms.append(Term(f"attn.{m}", loss, student=s.attention_tap(m), teacher=t.attention_tap(g),
                              inputs=inputs))
        if "hidden" in parts:
            terms.append(Term(f"hidden.{m}", feature_loss(fit_dense), student=s.layer_tap(m),
                              teacher=t.layer_tap(g), inputs=inputs))
    return terms


def _projection(student_dim: int, teacher_dim: int, projection: bool, what: str) -> nn.Module | None:
    if projection:
        return nn.Linear(student_dim, teacher_dim)
    if student_dim != teacher_dim:
        raise ConfigError("projection", f"True (the {what} widths differ: student {student_dim}, "
                          f"teacher {teacher_dim})", False, hint="a learned W_h maps the student's width")
    return None


def intermediate_objective(student: nn.Module, teacher: nn.Module, **options: Any) -> Objective:
    """An ``Objective`` of ``intermediate_terms`` (all weights 1, as in the paper)."""
    return Objective(*intermediate_terms(student, teacher, **options))


def prediction_objective(temperature: float = 1.0) -> Objective:
    """Prediction-layer distillation: soft cross-entropy against the teacher's logits at ``temperature``."""
    return Objective(Term("pred", soft_cross_entropy, student="logits", teacher="logits",
                          temperature=temperature, t2_scale=False))


def check_tokenizers(teacher_tokenizer: Any, student_tokenizer: Any,
                     token_map: Mapping[int, int] | None = None) -> torch.Tensor | None:
    """Reject different vocabularies unless ``token_map`` (student id → teacher id) covers the student's.

    Returns ``None`` when the vocabularies are equal, else a lookup tensor for ``mapped_forward``.
    """
    t_vocab, s_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if token_map is None:
        if t_vocab != s_vocab:
            only_s = sorted(set(s_vocab) - set(t_vocab))[:5]
            moved = sum(1 for k, v in s_vocab.items() if k in t_vocab and t_vocab[k] != v)
            raise ConfigError("student_tokenizer", f"the teacher's vocabulary ({len(t_vocab)} tokens)",
                              f"{len(s_vocab)} tokens, {moved} with other ids, e.g. new {only_s}",
                              hint="give token_map (student id -> teacher id) to distil across vocabularies")
        return None
    size = max(s_vocab.values()) + 1
    missing = sorted(set(s_vocab.values()) - set(token_map))
    if missing:
        raise ConfigError("token_map", f"a teacher id for every student id (0..{size - 1})",
                          f"{len(missing)} unmapped, e.g. {missing[:5]}")
    out_of_range = [v for v in token_map.values() if not 0 <= int(v) < len(t_vocab)]
    if out_of_range:
        raise ConfigError("token_map", f"teacher ids in 0..{len(t_vocab) - 1}", out_of_range[:5])
    lookup = torch.zeros(size, dtype=torch.long)
    for s_id, t_id in token_map.items():
        if 0 <= int(s_id) < size:
            lookup[int(s_id)] = int(t_id)
    return lookup


def mapped_forward(lookup: torch.Tensor | None, forward: Callable[[nn.Module, Mapping[str, Any]], Any]
                   ) -> Callable[[nn.Module, Mapping[str, Any]], Any]:
    """A teacher ``forward`` that first maps student token ids to teacher ids (identity when ``lookup`` is None)."""
    if lookup is None:
        return forward

    def run(model: nn.Module, batch: Mapping[str, Any]) -> Any:
        ids = batch["input_ids"]
        return forward(model, {**batch, "input_ids": lookup.to(ids.device)[ids]})
    return run


def hidden_forward(model: nn.Module, batch: Mapping[str, Any]) -> Any:
    """``encoder_forward`` returning the last hidden state: the ``logits`` of an encoder without a head."""
    from kd_nlu.data.text import encoder_forward

    output = encoder_forward(model, batch)
    return output if getattr(output, "logits", None) is not None else output.last_hidden_state


def objective_values(objective: Objective, student: nn.Module, teacher: nn.Module,
                     batches: Iterable[Mapping[str, Any]],
                     forward: Callable[[nn.Module, Mapping[str, Any]], Any] = hidden_forward) -> dict[str, float]:
    """Each term of ``objective`` and the total, averaged over ``batches`` with both models in eval mode."""
    s_taps, t_taps = TapSet(student, objective.student_taps), TapSet(teacher, objective.teacher_taps)
    modes = student.training, teacher.training
    student.eval(), teacher.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in batches:
            result = objective(s_taps.run(forward, student, batch), t_taps.run(forward, teacher, batch), batch)
            for key, value in result.log_values("").items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
    student.train(modes[0]), teacher.train(modes[1])
    if not count:
        raise ConfigError("batches", "at least one batch", 0)
    return {k: v / count for k, v in sums.items()}
