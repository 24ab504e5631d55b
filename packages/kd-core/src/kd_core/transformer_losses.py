"""Losses over transformer internals: pre-softmax attention scores and token features, with padding masks.

Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv:1909.10351:
the attention loss is the MSE between the *unnormalised* scores A = QKᵀ/√d_k of student and teacher,
averaged over heads; the hidden loss is MSE(H^S W_h, H^T) with a learned W_h.

Models are never edited to expose the scores. ``AttentionScoreMSE`` reads the hidden states that enter
a self-attention module (a tap ``in:<path to the self-attention module>``) and recomputes QKᵀ·scale with
that module's own query and key projections, so the student's gradient reaches the same weights as in
its forward pass. Each loss takes the padding mask as ``mask``: a plain ``Term`` passes it with
``inputs={"mask": "attention_mask"}``, so padded positions (whose scores are the additive −∞ mask) never enter
a mean.
"""

from __future__ import annotations

import torch
from torch import nn

from kd_core.errors import ConfigError

_QUERY_KEY_NAMES = (("query", "key"), ("q_lin", "k_lin"), ("q_proj", "k_proj"), ("q", "k"))


def _pair_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A ``[B, L]`` token mask as a ``[B, 1, L, L]`` mask of (query, key) pairs that are both tokens."""
    if mask.dim() != 2 or mask.shape[0] != shape[0] or mask.shape[1] != shape[-1]:
        raise ConfigError("mask", f"a [batch, length] token mask of shape {(shape[0], shape[-1])}",
                          tuple(mask.shape))
    m = mask.to(torch.float32)
    return (m[:, None, :, None] * m[:, None, None, :])


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between ``[B, L, D]`` features over the positions where ``mask`` (``[B, L]``) is 1.

    Without a mask it is ``F.mse_loss``; with one, the mean runs over the D entries of every kept position.
    """
    if student.shape != teacher.shape:
        raise ConfigError("teacher", f"features of shape {tuple(student.shape)} like the student's",
                          tuple(teacher.shape), hint="give a projection when the widths differ")
    diff = (student.float() - teacher.float()) ** 2
    if mask is None:
        return diff.mean()
    if mask.shape != student.shape[:2]:
        raise ConfigError("mask", f"a token mask of shape {tuple(student.shape[:2])}", tuple(mask.shape))
    m = mask.to(diff.dtype)[..., None]
    return (diff * m).sum() / (m.sum() * student.shape[-1]).clamp_min(1.0)


class MaskedHiddenMSE(nn.Module):
    """``masked_mse(projection(student), teacher, mask)``: TinyBERT's hidden/embedding loss.

    ``projection`` (TinyBERT's ``fit_dense`` W_h) is owned by this loss and trained with the student.
    To share one projection between several terms, give it to one loss as ``projection`` and to the
    others as ``shared``: they use it without registering it again, so the objective (and every
    checkpoint) holds its weights once. ``None`` for both compares the features as they are.
    """

    def __init__(self, projection: nn.Module | None = None, shared: nn.Module | None = None) -> None:
        super().__init__()
        if projection is not None and shared is not None:
            raise ConfigError("shared", "either an owned projection or a shared one, not both",
                              {"projection": type(projection).__name__, "shared": type(shared).__name__})
        self.projection = projection
        self._shared = (shared,) if shared is not None else ()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The (masked) MSE between projected student features and teacher features."""
        projection = self.projection if self.projection is not None else (self._shared or (None,))[0]
        if projection is not None:
            student = projection(student)
        return masked_mse(student, teacher, mask)


def attention_score_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
                        average_heads: bool = False) -> torch.Tensor:
    """(1/h)·Σ_heads MSE(A^S, A^T) over pre-softmax scores ``[B, H, L, L]``.

    ``mask`` (``[B, L]``, 1 = token) keeps only (query, key) pairs of real tokens; the mean runs over
    them and the heads. With different head counts, ``average_heads`` compares the head-averaged maps
    (TinyBERT keeps the head count equal; the average is the fallback its edge cases name).
    """
    if student.dim() != 4 or teacher.dim() != 4:
        raise ConfigError("scores", "attention scores of shape [batch, heads, length, length]",
                          (tuple(student.shape), tuple(teacher.shape)))
    if student.shape[1] != teacher.shape[1]:
        if not average_heads:
            raise ConfigError("average_heads", f"True, or a student with the teacher's {teacher.shape[1]} heads",
                              f"{student.shape[1]} student heads with average_heads=False")
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    if student.shape != teacher.shape:
        raise ConfigError("teacher", f"scores of shape {tuple(student.shape)} like the student's",
                          tuple(teacher.shape))
    diff = (student.float() - teacher.float()) ** 2
    if mask is None:
        return diff.mean()
    pairs = _pair_mask(mask, diff.shape)
    return (diff * pairs).sum() / (pairs.sum() * diff.shape[1]).clamp_min(1.0)


def query_key(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The query and key projections of a self-attention module (``query``/``key``, ``q_lin``/``k_lin`` ...)."""
    for q_name, k_name in _QUERY_KEY_NAMES:
        q, k = getattr(module, q_name, None), getattr(module, k_name, None)
        if isinstance(q, nn.Module) and isinstance(k, nn.Module):
            return q, k
    raise ConfigError("attention module", "a self-attention module with separate query and key projections "
                      f"(one of {list(_QUERY_KEY_NAMES)})", type(module).__name__)


def num_heads(module: nn.Module) -> int:
    """The head count a self-attention module declares."""
    for name in ("num_attention_heads", "n_heads", "num_heads"):
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    config = getattr(module, "config", None)
    value = getattr(config, "num_attention_heads", None)
    if isinstance(value, int) and value > 0:
        return value
    raise ConfigError("attention module", "a module with num_attention_heads (or n_heads)", type(module).__name__)


def attention_scores(module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The pre-softmax scores QKᵀ·scale ``[B, H, L, L]`` that ``module`` computes from ``hidden``.

    The scale is the module's own ``scaling`` when it has one, else 1/√d_k. No mask is added: masking
    is the loss's job.
    """
    q_proj, k_proj = query_key(module)
    heads = num_heads(module)
    batch, length = hidden.shape[:2]
    q = q_proj(hidden).view(batch, length, heads, -1).transpose(1, 2)
    k = k_proj(hidden).view(batch, length, heads, -1).transpose(1, 2)
    scale = getattr(module, "scaling", None)
    if not isinstance(scale, float):
        scale = q.shape[-1] ** -0.5
    return torch.matmul(q, k.transpose(-1, -2)) * scale


class AttentionScoreMSE:
    """TinyBERT's attention loss on taps ``in:<self-attention module>`` of student and teacher.

    Holds references to both self-attention modules (not as submodules: their weights belong to the
    models, and the optimizer must not see the student's twice); recomputes each side's scores and
    returns ``attention_score_mse``.
    """

    def __init__(self, student_module: nn.Module, teacher_module: nn.Module, average_heads: bool = False) -> None:
        query_key(student_module), query_key(teacher_module)
        s_heads, t_heads = num_heads(student_module), num_heads(teacher_module)
        if s_heads != t_heads and not average_heads:
            raise ConfigError("average_heads", f"True, or a student with the teacher's {t_heads} heads",
                              f"{s_heads} student heads with average_heads=False")
        self._modules = (student_module, teacher_module)
        self.average_heads = average_heads

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        s_module, t_module = self._modules
        s_scores = attention_scores(s_module, student)
        with torch.no_grad():
            t_scores = attention_scores(t_module, teacher)
        return attention_score_mse(s_scores, t_scores, mask, self.average_heads)
