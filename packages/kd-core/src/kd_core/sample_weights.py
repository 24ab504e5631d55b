"""Per-sample loss weights that the objective multiplies in: DCS's boosting-style corrective weights.

Amara, Jain and Chadha, "Dynamic Corrective Self-Distillation for Better Fine-Tuning of Pretrained Models"
(DCS), arXiv:2312.07028 (2023). The paper fixes the structure (a same-architecture teacher; AdaBoost-style
weights boosted on the samples where student and teacher disagree); the formulas below are our reconstruction
of it, not the paper's published defaults. Every sample i carries a weight w_i
(kept at mean 1 over the training set, i.e. N·w_i of the paper's normalised 1/N weights). After each
iteration k, on the samples it saw:

- discordance d_i = 1[argmax p_S(x_i) ≠ argmax p_T(x_i)] (``soft=True``: d_i = ½‖p_S − p_T‖₁);
- ε_k = Σ w_i d_i / Σ w_i, clipped to [1e-6, 0.5 − 1e-6]; α_k = ½ ln((1 − ε_k)/ε_k);
- w_i ← w_i · exp(α_k d_i), then all weights renormalised to mean 1 and capped at ``cap`` × the mean.

The student minimises Σ_i w_i ℓ_i / Σ_i w_i over each mini-batch (divided by Σw, not by the batch size).

How it plugs into kd-core (the engine adds ``batch["index"]``, each sample's position in the training set,
to every training batch; the losses return per-sample values with ``reduction="none"``):

- ``weights`` is a ``kd_core.objective.SampleWeights`` provider: ``Term(..., sample_weight=weights)`` weighs
  each sample of the term by its current w_i (the provider returns w·B/Σw, so the term's Σ w_i ℓ_i / B is
  Σ w_i ℓ_i / Σ w_i);
- ``weights.observer()`` is a weight-0 ``Term`` over student and teacher logits (``weights.observe``, with
  the batch's sample ids as an input): it records the batch's discordance and logs its mean;
- ``weights`` is also a ``kd_core.Callback``: it applies the recorded discordance at every optimizer
  step (``every="step"``) or once per epoch (``every="epoch"``).

Choices the paper leaves open: the teacher is fixed (no EMA of the student);
ground truth does not enter d_i; with ``every="step"`` ε_k is the batch's weighted error, so each step's
α is its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from kd_core.engine import Callback, Distiller
from kd_core.errors import ConfigError
from kd_core.losses import check_same_shape
from kd_core.objective import Term
from kd_core.taps import LOGITS

__all__ = ["CorrectiveWeights", "boosting_step", "discordance"]

EPS_MIN = 1e-6


def discordance(student: torch.Tensor, teacher: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """Per-sample disagreement in [0, 1]: argmax mismatch, or (``soft``) half the L1 distance of the softmaxes."""
    check_same_shape(student, teacher)
    s, t = student.detach().float(), teacher.detach().float()
    if soft:
        return 0.5 * (s.softmax(-1) - t.softmax(-1)).abs().sum(-1)
    return (s.argmax(-1) != t.argmax(-1)).float()


def boosting_step(weights: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """One AdaBoost-style update of ``weights`` (the samples seen) by discordance ``d``: (new weights, ε, α).

    ε = Σ w d / Σ w clipped to [1e-6, 0.5 − 1e-6]; α = ½ ln((1 − ε)/ε); w ← w · exp(α d). The caller
    renormalises over the whole training set.
    """
    if weights.shape != d.shape:
        raise ConfigError("discordance", f"one value per weight {tuple(weights.shape)}", tuple(d.shape))
    w = weights.double()
    eps = float((w * d.double()).sum() / w.sum().clamp_min(1e-300))
    eps = min(max(eps, EPS_MIN), 0.5 - EPS_MIN)
    alpha = 0.5 * math.log((1 - eps) / eps)
    return (w * torch.exp(alpha * d.double())).to(weights.dtype), eps, alpha


class CorrectiveWeights(Callback):
    """DCS's per-sample weights over ``num_samples`` training samples, boosted where student and teacher disagree.

    ``every``: ``"step"`` (update after every optimizer step, the default) or ``"epoch"`` (one ε and
    α per epoch, one boosting iteration per epoch). ``cap`` bounds w_i/mean (weights collapsing onto a few,
    possibly mislabelled, samples is the failure to guard against); ``soft`` picks the soft discordance.
    """

    def __init__(self, num_samples: int, every: Literal["step", "epoch"] = "step", cap: float = 10.0,
                 soft: bool = False, id_key: str = "index") -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ConfigError("num_samples", "an integer ≥ 1 (the training set's size)", num_samples)
        if every not in ("step", "epoch"):
            raise ConfigError("every", "'step' or 'epoch'", every)
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap) or cap < 1:
            raise ConfigError("cap", "a finite number ≥ 1 (the largest weight / mean weight)", cap)
        self.num_samples, self.every, self.cap, self.soft, self.id_key = num_samples, every, float(cap), soft, id_key
        self.weights = torch.ones(num_samples, dtype=torch.float64)
        self.history: list[dict[str, float]] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._served = False  # weights were given to a term since the last update

    # -- the per-sample weights (a SampleWeights provider) ------------------------------------------
    def ids(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The sample ids of ``batch`` (``batch[id_key]``), checked against the training set's size."""
        if self.id_key not in batch:
            raise ConfigError(f"batch[{self.id_key!r}]", "sample ids in every batch for per-sample weights",
                              sorted(batch))
        return self._check_ids(batch[self.id_key])

    def _check_ids(self, ids: Any) -> torch.Tensor:
        ids = torch.as_tensor(ids).reshape(-1).long().cpu()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.num_samples):
            raise ConfigError(f"batch[{self.id_key!r}]", f"sample ids in [0, {self.num_samples})",
                              [int(ids.min()), int(ids.max())])
        return ids

    def batch_weights(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The current weights w_i of ``batch``'s samples (float64, on the CPU)."""
        return self.weights[self.ids(batch)]

    def __call__(self, batch: Mapping[str, Any], student_out: Mapping[str, Any],
                 teacher_out: Mapping[str, Any] | None, progress: float) -> torch.Tensor:
        """The ``SampleWeights`` protocol: the batch's weights scaled to sum to B, w·B/Σw (float64, CPU).

        A term's Σ_i w_i ℓ_i / B with these is DCS's Σ_i w_i ℓ_i / Σ_i w_i.
        """
        w = self.batch_weights(batch)
        self._served = True
        return w * (len(w) / w.sum())

    # -- recording the discordance --------------------------------------------------------------------
    def observe(self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Record the discordance of the samples ``index`` for the next update; return its (unweighted) mean.

        A loss for a weight-0 ``Term`` over student and teacher logits with ``inputs={"index": id_key}``
        (``observer()`` builds it).
        """
        d = discordance(student, teacher, self.soft).cpu()
        ids = self._check_ids(index)
        if len(ids) != len(d):
            raise ConfigError("index", f"one sample id per row of the logits ({len(d)})", len(ids))
        self._pending.append((ids, d))
        return d.mean().to(student.device)

    def observer(self, name: str = "discordance", student: str = LOGITS, teacher: str = LOGITS) -> Term:
        """The weight-0 ``Term`` that records (and logs) the discordance of student and teacher taps."""
        return Term(name, self.observe, student=student, teacher=teacher, weight=0.0,
                    inputs={"index": self.id_key})

    # -- the update ---------------------------------------------------------------------------------
    def apply(self) -> dict[str, float] | None:
        """Boost the weights of the samples recorded since the last update; renormalise; cap. Returns ε, α."""
        if not self._pending:
            if self._served:
                raise ConfigError("objective", "a term recording the discordance (CorrectiveWeights.observer())",
                                  "weights served to terms but no discordance observed",
                                  hint="without it the weights never change")
            return None
        self._served = False
        ids = torch.cat([i for i, _ in self._pending])
        d = torch.cat([v for _, v in self._pending]).double()
        self._pending.clear()
        boosted, eps, alpha = boosting_step(self.weights[ids], d)
        self.weights[ids] = boosted
        self.weights = _normalise(self.weights, self.cap)
        record = {"epsilon": eps, "alpha": alpha, "max_weight": float(self.weights.max()),
                  "discordance": float(d.mean())}
        self.history.append(record)
        return record

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Update after each optimizer step (``every="step"``)."""
        if self.every == "step":
            self.apply()

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Update once per epoch (``every="epoch"``)."""
        if self.every == "epoch":
            self.apply()

    def on_phase_start(self, distiller: Distiller, phase: Any, total_steps: int) -> None:
        """Drop discordance recorded outside training (e.g. by the engine's shape probe)."""
        self._pending.clear()
        self._served = False

    def state_dict(self) -> dict[str, Any]:
        """The weights and the update history (saved in every checkpoint, so a resumed run keeps them)."""
        return {"weights": self.weights.clone(), "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s weights and history."""
        weights = torch.as_tensor(state["weights"], dtype=torch.float64)
        if weights.shape != self.weights.shape:
            raise ConfigError("state['weights']", f"{self.num_samples} weights", tuple(weights.shape))
        self.weights, self.history = weights.clone(), [dict(h) for h in state["history"]]


def _normalise(weights: torch.Tensor, cap: float) -> torch.Tensor:
    """Weights scaled to mean 1 with none above ``cap``: the largest are set to ``cap``, the rest rescaled."""
    w = weights / weights.mean()
    n = len(w)
    capped = torch.zeros(n, dtype=torch.bool)
    scale = 1.0
    while True:  # at most n rounds: each one caps at least one more weight
        free = ~capped
        if not bool(free.any()):
            break
        scale = (n - cap * int(capped.sum())) / float(w[free].sum())
        over = free & (w * scale > cap)
        if not bool(over.any()):
            break
        capped |= over
    return torch.where(capped, torch.full_like(w, cap), w * scale)
