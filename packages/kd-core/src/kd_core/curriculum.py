"""Curriculum expert selection: a ``Weighting`` that routes each sample to one expert of an ``Ensemble``.

Amara, Ziaeefard, Meyer, Gross and Clark, "CES-KD: Curriculum-based Expert Selection for Guided
Knowledge Distillation", arXiv:2209.07606 (ICPR 2022). Experts E_1 < ... < E_K are ordered from the
smallest assistant to the original teacher. Every sample carries a fixed difficulty score (by default
the largest teacher's cross-entropy, computed once). Its difficulty quantile u in (0, 1) and a
schedule γ(progress) pick the expert k(u) = min(K, 1 + ⌊K·u^γ⌋): with γ large most samples go to the
small experts; as γ falls to 1 the strata become equal, so easy samples keep small experts and hard
ones reach the teacher. ``reverse=True`` is the anti-curriculum ablation (hard samples to small experts).

The quantile of the sample with rank r (0 = easiest) among N is the mid-rank (r + 0.5) / N, so at
γ = 1 the K strata hold N/K samples each (when K divides N). Equal scores are ordered by a seeded
random permutation: the same seed always gives the same routing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from kd_core.errors import ConfigError
from kd_core.schedules import Schedule, as_schedule
from kd_core.signals import Batch, Forward, TeacherOutput, default_forward
from kd_core.taps import select_logits

__all__ = ["CurriculumSelection", "cross_entropy_difficulty", "difficulty_quantiles"]

_GAMMA_PROBES = tuple(i / 100 for i in range(101))


def _as_scores(difficulty: Mapping[int, float] | Sequence[float] | torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Sample ids and their scores (a float64 tensor) from a mapping, a sequence or a 1-D tensor."""
    if isinstance(difficulty, Mapping):
        ids = sorted(int(i) for i in difficulty)  # sorted: the routing must not depend on insertion order
        if len(set(ids)) != len(ids):
            raise ConfigError("difficulty", "one score per sample id", "ids that collide as integers")
        values = [difficulty[k] for k in sorted(difficulty, key=int)]
    elif isinstance(difficulty, torch.Tensor | Sequence) and not isinstance(difficulty, str | bytes):
        values = list(torch.as_tensor(difficulty).reshape(-1).tolist()) if isinstance(difficulty, torch.Tensor) \
            else list(difficulty)
        ids = list(range(len(values)))
    else:
        raise ConfigError("difficulty", "a mapping sample id -> score, or a sequence of scores",
                          type(difficulty).__name__)
    if not ids:
        raise ConfigError("difficulty", "a score for at least one sample", "none")
    try:
        scores = torch.tensor([float(v) for v in values], dtype=torch.float64)
    except (TypeError, ValueError):
        raise ConfigError("difficulty", "numeric scores", values[:5]) from None
    if not bool(torch.isfinite(scores).all()):
        bad = [ids[i] for i in torch.nonzero(~torch.isfinite(scores)).reshape(-1).tolist()[:5]]
        raise ConfigError("difficulty", "finite scores", f"non-finite scores for sample ids {bad}")
    return ids, scores


def difficulty_quantiles(difficulty: Mapping[int, float] | Sequence[float] | torch.Tensor,
                         seed: int = 0) -> dict[int, float]:
    """Sample id -> mid-rank difficulty quantile (r + 0.5) / N, ties in a seeded random order."""
    ids, scores = _as_scores(difficulty)
    n = len(ids)
    # a seeded shuffle, then a stable sort by score: equal scores keep the shuffled (reproducible) order
    shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    order = shuffle[torch.sort(scores[shuffle], stable=True).indices]
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    quantiles = (ranks + 0.5) / n
    return {i: float(q) for i, q in zip(ids, quantiles.tolist())}


class CurriculumSelection:
    """Per-sample one-hot expert weights ``[B, K]`` for an ``Ensemble`` of K experts (smallest first).

    ``difficulty`` maps a sample id (the batch's ``id_key`` entry, by default the engine's ``"index"``)
    to a score, higher meaning harder; a sequence or tensor is read as scores for ids 0..N-1.
    ``gamma_schedule`` (a number or a ``kd_core.schedules`` schedule of phase progress, > 0 everywhere)
    is the exponent γ; a schedule from a large value down to 1 is the CES-KD curriculum. ``reverse``
    routes by easiness instead of difficulty (the anti-curriculum). ``seed`` orders equal scores.
    """

    def __init__(self, difficulty: Mapping[int, float] | Sequence[float] | torch.Tensor, num_experts: int,
                 gamma_schedule: float | Schedule, reverse: bool = False, seed: int = 0,
                 id_key: str = "index") -> None:
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ConfigError("experts", "a pool of at least one expert", num_experts)
        self.num_experts = num_experts
        self.gamma = as_schedule(gamma_schedule, "gamma_schedule")
        for p in _GAMMA_PROBES:
            g = self.gamma(p)
            if not (isinstance(g, int | float) and math.isfinite(g) and g > 0):
                raise ConfigError("gamma_schedule", "a curriculum exponent γ > 0 at every progress",
                                  f"{g!r} at progress {p}")
        self.reverse = bool(reverse)
        self.id_key = id_key
        quantiles = difficulty_quantiles(difficulty, seed)
        if self.reverse:
            quantiles = {i: 1.0 - q for i, q in quantiles.items()}
        if min(quantiles) < 0:
            raise ConfigError("difficulty", "non-negative sample ids", min(quantiles))
        self._size = max(quantiles) + 1
        self._u = torch.full((self._size,), float("nan"), dtype=torch.float64)
        self._u[torch.tensor(list(quantiles))] = torch.tensor(list(quantiles.values()), dtype=torch.float64)
        self.last_selection: torch.Tensor | None = None

    def quantile(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """The routing quantile u of each id (the difficulty quantile, or 1 − it when ``reverse``)."""
        ids = torch.as_tensor(ids if isinstance(ids, torch.Tensor) else list(ids)).reshape(-1).long().cpu()
        in_range = (ids >= 0) & (ids < self._size)
        u = torch.full(ids.shape, float("nan"), dtype=torch.float64)
        u[in_range] = self._u[ids[in_range]]
        known = ~torch.isnan(u)
        if not bool(known.all()):
            missing = ids[~known][:5].tolist()
            raise ConfigError(f"batch[{self.id_key!r}]", "sample ids that have a difficulty score",
                              f"unscored ids {missing}")
        return u

    def select(self, ids: Iterable[int] | torch.Tensor, progress: float) -> torch.Tensor:
        """The expert of each id at ``progress``, 0-based (0 = smallest): min(K, 1 + ⌊K·u^γ⌋) − 1."""
        u = self.quantile(ids)
        k = self.num_experts
        gamma = float(self.gamma(progress))
        return (k * u.pow(gamma)).floor().long().clamp(max=k - 1)

    def shares(self, progress: float, ids: Iterable[int] | None = None) -> list[float]:
        """The fraction of samples (all scored ids by default) routed to each expert at ``progress``."""
        if ids is None:
            ids = torch.nonzero(~torch.isnan(self._u)).reshape(-1)
        chosen = self.select(ids, progress)
        counts = torch.bincount(chosen, minlength=self.num_experts).double()
        return (counts / counts.sum()).tolist()

    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        """One-hot ``[B, K]`` weights selecting each sample's expert."""
        if len(outputs) != self.num_experts:
            raise ConfigError("experts", f"{self.num_experts} expert outputs (one per expert)", len(outputs))
        if self.id_key not in batch:
            raise ConfigError(f"batch[{self.id_key!r}]", "sample ids in every batch for curriculum routing",
                              sorted(batch))
        chosen = self.select(batch[self.id_key], progress)
        self.last_selection = chosen
        return nn.functional.one_hot(chosen, self.num_experts).float()

    def update(self, reward: torch.Tensor) -> None:
        """Static routing (a fixed schedule): nothing to learn."""


def cross_entropy_difficulty(model: nn.Module, batches: Iterable[Batch], forward: Forward = default_forward,
                             id_key: str = "index", label_key: str = "label") -> dict[int, float]:
    """Sample id -> the cross-entropy loss of ``model`` (in eval mode) on that sample: a difficulty score."""
    was_training = model.training
    model.eval()
    scores: dict[int, float] = {}
    with torch.no_grad():
        for batch in batches:
            for key in (id_key, label_key):
                if key not in batch:
                    raise ConfigError(f"batch[{key!r}]", "sample ids and labels in every batch", sorted(batch))
            logits = select_logits(forward(model, batch)).float()
            losses = nn.functional.cross_entropy(logits, batch[label_key].to(logits.device), reduction="none")
            ids = torch.as_tensor(batch[id_key]).reshape(-1).tolist()
            scores.update({int(i): float(v) for i, v in zip(ids, losses.cpu().tolist())})
    model.train(was_training)
    if not scores:
        raise ConfigError("batches", "at least one batch to score", 0)
    return scores

