"""Per-sample loss weights that the objective multiplies in: DCS's boosting-style corrective weights.

Amara, Jain and Chadha, "Dynamic Corrective Self-Distillation for Better Fine-Tuning of Pretrained Models"
(DCS), arXiv:2312.07028 (2023); spec in ``research/methods-b.md`` §2. Every sample i carries a weight w_i
(kept at mean 1 over the training set, i.e. N·w_i of the paper's normalised 1/N weights). After each
iteration k, on the samples it saw:

- discordance d_i = 1[argmax p_S(x_i) ≠ argmax p_T(x_i)] (``soft=True``: d_i = ½‖p_S − p_T‖₁);
- ε_k = Σ w_i d_i / Σ w_i, clipped to [1e-6, 0.5 − 1e-6]; α_k = ½ ln((1 − ε_k)/ε_k);
- w_i ← w_i · exp(α_k d_i), then all weights renormalised to mean 1 and capped at ``cap`` × the mean.

The student minimises Σ_i w_i ℓ_i / Σ_i w_i over each mini-batch (divided by Σw, not by the batch size).

How it plugs into kd-core without touching the engine or the losses (losses already return per-sample
values with ``reduction="none"``):

- ``weights.track(forward)`` wraps the ``Distiller``'s ``forward`` so the provider sees each batch's
  sample ids (``batch["index"]``, which ``IndexedDataset`` adds);
- ``weights.weighted(loss)`` is a loss for a ``Term``: it calls ``loss(..., reduction="none")`` and
  returns the Σw-normalised weighted mean with the current batch's weights;
- ``weights.observe`` is a loss for a weight-0 ``Term`` over student and teacher logits: it records the
  batch's discordance (and returns its mean, which the engine logs);
- ``weights`` is itself a ``kd_core.Callback``: it applies the recorded discordance at every optimizer
  step (``every="step"``) or once per epoch (``every="epoch"``).

Choices where the spec leaves room (all marked [I] there): the teacher is fixed (no EMA of the student);
ground truth does not enter d_i; with ``every="step"`` ε_k is the batch's weighted error, so each step's
α is its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from kd_core.engine import Callback, Distiller
from kd_core.errors import ConfigError
from kd_core.losses import check_same_shape
from kd_core.signals import Batch, Forward

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

    ``every``: ``"step"`` (update after every optimizer step, the issue's reading) or ``"epoch"`` (the spec's
    suggested default: one ε and α per epoch). ``cap`` bounds w_i/mean (weights collapsing onto a few,
    possibly mislabelled, samples is the spec's edge case); ``soft`` picks the soft discordance.
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
        self._ids: torch.Tensor | None = None
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    # -- which samples the current batch holds ------------------------------------------------------
    def track(self, forward: Forward) -> Forward:
        """``forward`` that also records the batch's sample ids (pass it as ``Distiller(forward=...)``)."""

        def tracked(model: Any, batch: Batch) -> Any:
            self.see(batch)
            return forward(model, batch)

        return tracked

    def see(self, batch: Mapping[str, Any]) -> None:
        """Record the sample ids of ``batch`` (the batch whose loss is computed next)."""
        if self.id_key not in batch:
            raise ConfigError(f"batch[{self.id_key!r}]", "sample ids in every batch for per-sample weights",
                              sorted(batch))
        self._ids = torch.as_tensor(batch[self.id_key]).reshape(-1).long().cpu()

    def batch_weights(self, size: int | None = None) -> torch.Tensor:
        """The current weights of the last batch seen (float64, on the CPU)."""
        if self._ids is None:
            raise ConfigError("forward", "a forward wrapped by CorrectiveWeights.track (no batch seen yet)", None)
        ids = self._ids
        if size is not None and len(ids) != size:
            raise ConfigError("batch", f"{len(ids)} samples like the last batch seen", size)
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_samples:
            raise ConfigError(f"batch[{self.id_key!r}]", f"sample ids in [0, {self.num_samples})",
                              [int(ids.min()), int(ids.max())])
        return self.weights[ids]

    # -- losses for Terms ---------------------------------------------------------------------------
    def weighted(self, loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``loss`` weighted per sample: Σ w_i ℓ_i / Σ w_i over the batch, ℓ from ``loss(..., reduction="none")``."""

        def weighted_loss(*args: Any, **options: Any) -> torch.Tensor:
            per_sample = loss(*args, **{**options, "reduction": "none"})
            if per_sample.ndim != 1:
                raise ConfigError("loss", "one value per sample with reduction='none'", tuple(per_sample.shape))
            w = self.batch_weights(len(per_sample)).to(per_sample.device, per_sample.dtype)
            return (w * per_sample).sum() / w.sum()

        weighted_loss.__name__ = f"weighted_{getattr(loss, '__name__', 'loss')}"
        return weighted_loss

    def observe(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Record the batch's discordance for the next update; return its (unweighted) mean for the logs."""
        d = discordance(student, teacher, self.soft).cpu()
        if self._ids is None or len(self._ids) != len(d):
            raise ConfigError("forward", "a forward wrapped by CorrectiveWeights.track", "no matching batch seen")
        self._pending.append((self._ids, d))
        return d.mean().to(student.device)

    # -- the update ---------------------------------------------------------------------------------
    def apply(self) -> dict[str, float] | None:
        """Boost the weights of the samples recorded since the last update; renormalise; cap. Returns ε, α."""
        if not self._pending:
            return None
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
