"""Reinforced multi-teacher selection: a ``Weighting`` for ``Ensemble`` whose policy learns from the student.

Yuan, Shou, Pei, Lin, Gong, Fu and Jiang, "Reinforced Multi-Teacher Selection for Knowledge Distillation",
AAAI 2021 (arXiv:2012.06048). There is no official code, and the state and reward below are reconstructed
from the paper's description, not checked against its full text; "the paper" below means that reading.

- State of (instance j, teacher k): s_jk = [P_k(x_j) (teacher k's softmax); CE_k(y_j) (teacher k's loss on
  the gold label, when the batch has one); max P_k(x_j); one-hot k]. The paper's optional pooled
  representation of x_j is not included: the ensemble only sees the taps its objective reads.
- Policy: π(a_jk = 1 | s_jk) = σ(f_θ(s_jk)), f a linear map (``hidden=0``, the paper's σ(W s + b)) or a
  one-hidden-layer MLP; a Bernoulli "distil from teacher k on x_j" decision, sampled while training.
- Teacher weights for the ensemble: a_jk / |K_j| over the selected set K_j. ``Ensemble`` averages the
  selected teachers' *logits* (the paper averages their KL terms; the two agree when one teacher is selected).
  When no teacher is selected the row falls back to uniform weights, and ``Term(..., sample_weight=
  weighting.sample_weights)`` zeroes that sample's KD term, so only cross-entropy applies to it, as the paper says.
- REINFORCE with a baseline, in ``update(reward)``: the surrogate
  −mean_j Σ_k (r_j − b)·log π(a_jk | s_jk) − β·mean_j Σ_k H(π_jk), one optimizer step, then b ← m·b + (1 − m)·r̄
  (b starts at 0; r is a scalar for the batch or one value per instance).
- ``PolicyReward`` is the ``kd_core.Callback`` that delivers the reward after each optimizer step: by default
  the decrease of the student's loss on a fixed held-out dev set caused by that step (the paper's "student
  quality after it trains on the selected teachers"); also −dev loss, or −the step's training loss.
- ``warmup_steps``: the first updates select every teacher and do not train the policy (the paper's
  equal-weight warm-up of the student).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kd_core.engine import Callback, Distiller
from kd_core.errors import ConfigError
from kd_core.signals import Batch, TeacherOutput
from kd_core.taps import LOGITS, select_logits, unwrap

__all__ = ["PolicyReward", "ReinforcedWeighting", "bernoulli_log_prob"]

RewardKind = Literal["dev_improvement", "dev_loss", "train_loss"]


def bernoulli_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a) for Bernoulli actions with P(a = 1) = σ(logits), elementwise and numerically stable."""
    return -F.binary_cross_entropy_with_logits(logits, actions.to(logits.dtype), reduction="none")


def _positive_int(value: Any, argument: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(argument, f"an integer ≥ {minimum}", value)
    return value


def _non_negative(value: Any, argument: str, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 \
            or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else "≥ 0"
        raise ConfigError(argument, f"a finite number {bound}", value)
    return float(value)


def mean_over_processes(tensors: Sequence[torch.Tensor]) -> None:
    """Average each tensor in place over the processes of a distributed run (nothing with one process).

    The policy is trained outside the engine's step (its own REINFORCE backward), so the step's wrapping
    does not reach it: averaging its gradients and rewards here keeps every process's policy identical."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    for tensor in tensors:
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())


class ReinforcedWeighting:
    """Per-instance teacher selection ``[B, T]`` by a small policy network trained with REINFORCE.

    ``num_teachers`` and ``num_classes`` fix the state's width; ``use_label`` puts each teacher's gold-label
    cross-entropy in the state (a known risk: it lets the policy pick teachers that are right: keep it for
    training, ablate it to see). ``sample=False`` selects greedily (π > 0.5) instead of sampling.
    """

    def __init__(self, num_teachers: int, num_classes: int, hidden: int = 32, lr: float = 1e-3,
                 baseline_momentum: float = 0.9, entropy_bonus: float = 1e-3, use_label: bool = True,
                 warmup_steps: int = 0, seed: int = 0, label_key: str = "label", sample: bool = True) -> None:
        self.num_teachers = _positive_int(num_teachers, "num_teachers")
        self.num_classes = _positive_int(num_classes, "num_classes", 2)
        hidden = _positive_int(hidden, "hidden", 0)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
            raise ConfigError("lr", "a finite number > 0 (the policy's learning rate)", lr)
        self.momentum = _non_negative(baseline_momentum, "baseline_momentum", 1.0)
        self.entropy_bonus = _non_negative(entropy_bonus, "entropy_bonus")
        self.warmup_steps = _positive_int(warmup_steps, "warmup_steps", 0)
        self.use_label, self.label_key, self.sample = use_label, label_key, sample
        width = self.feature_size
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        self.policy: nn.Module = nn.Linear(width, 1) if hidden == 0 else nn.Sequential(
            nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        torch.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=float(lr))
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline = 0.0
        self.steps = 0
        self.history: list[dict[str, float]] = []
        self.last_selected_any: torch.Tensor | None = None
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.selected = torch.zeros(self.num_classes, self.num_teachers, dtype=torch.float64)
        self.seen = torch.zeros(self.num_classes, dtype=torch.float64)

    @property
    def feature_size(self) -> int:
        """Width of one state s_jk: classes + (gold CE) + max prob + one-hot teacher."""
        return self.num_classes + int(self.use_label) + 1 + self.num_teachers

    # -- state and policy ---------------------------------------------------------------------------
    def features(self, outputs: Sequence[TeacherOutput], batch: Batch) -> torch.Tensor:
        """The states ``[B, T, F]`` (detached, float32, on the CPU)."""
        if len(outputs) != self.num_teachers:
            raise ConfigError("teachers", f"{self.num_teachers} teacher outputs", len(outputs))
        logits = torch.stack([select_logits(o[LOGITS] if isinstance(o, dict) else o).detach().float().cpu()
                              for o in outputs], dim=1)  # [B, T, C]
        if logits.ndim != 3 or logits.shape[-1] != self.num_classes:
            raise ConfigError("teachers", f"logits of shape [batch, {self.num_classes}]",
                              tuple(logits.shape[:1] + logits.shape[2:]))
        log_p = logits.log_softmax(-1)
        parts = [log_p.exp()]
        if self.use_label:
            if self.label_key not in batch:
                raise ConfigError(f"batch[{self.label_key!r}]", "gold labels for the teachers' CE state feature",
                                  sorted(batch), hint="or use_label=False")
            labels = torch.as_tensor(batch[self.label_key]).reshape(-1).long().cpu()
            index = labels.view(-1, 1, 1).expand(-1, self.num_teachers, 1)
            parts.append(-log_p.gather(-1, index))
        parts.append(log_p.exp().amax(-1, keepdim=True))
        eye = torch.eye(self.num_teachers).expand(len(logits), -1, -1)
        parts.append(eye)
        return torch.cat(parts, dim=-1)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Policy logits ``[B, T]``: σ of them is π(a = 1 | s)."""
        return self.policy(states).squeeze(-1)

    def probabilities(self, outputs: Sequence[TeacherOutput], batch: Batch) -> torch.Tensor:
        """π(select teacher k | s_jk), ``[B, T]`` (no sampling, no recording)."""
        with torch.no_grad():
            return torch.sigmoid(self.logits(self.features(outputs, batch)))

    # -- the Weighting protocol ---------------------------------------------------------------------
    def __call__(self, outputs: Sequence[TeacherOutput], batch: Batch, progress: float) -> torch.Tensor:
        """Sample a selection, record it for ``update`` and return the teachers' weights ``[B, T]``."""
        states = self.features(outputs, batch)
        if self.steps < self.warmup_steps:
            actions = torch.ones(states.shape[:2])
        else:
            with torch.no_grad():
                probs = torch.sigmoid(self.logits(states))
            actions = torch.bernoulli(probs, generator=self.generator) if self.sample else (probs > 0.5).float()
            self._pending.append((states, actions))
        if self.label_key in batch:
            labels = torch.as_tensor(batch[self.label_key]).reshape(-1).long().cpu()
            self.selected.index_add_(0, labels, actions.double())
            self.seen.index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64))
        count = actions.sum(1, keepdim=True)
        self.last_selected_any = (count > 0).reshape(-1)
        return torch.where(count > 0, actions / count.clamp_min(1), torch.full_like(actions, 1 / self.num_teachers))

    def surrogate(self, reward: torch.Tensor | float) -> torch.Tensor:
        """The REINFORCE loss of the selections recorded since the last update (its gradient is −∇J)."""
        if not self._pending:
            raise ConfigError("update", "a selection recorded by a call before the reward", "none")
        states = torch.cat([s for s, _ in self._pending])
        actions = torch.cat([a for _, a in self._pending])
        r = torch.as_tensor(reward, dtype=torch.float32).reshape(-1)
        if len(r) not in (1, len(states)):
            raise ConfigError("reward", f"a scalar or one reward per instance ({len(states)})", len(r))
        advantage = (r - self.baseline).reshape(-1, 1)
        z = self.logits(states)
        log_prob = bernoulli_log_prob(z, actions)
        p = torch.sigmoid(z)
        entropy = -(p * F.logsigmoid(z) + (1 - p) * F.logsigmoid(-z))
        return -(advantage * log_prob).sum(1).mean() - self.entropy_bonus * entropy.sum(1).mean()

    def update(self, reward: torch.Tensor | float) -> None:
        """One REINFORCE step on the recorded selections with ``reward``, then move the baseline toward it."""
        self.steps += 1
        if not self._pending:  # warm-up, or no selection since the last update
            return
        r = torch.as_tensor(reward, dtype=torch.float32).detach().cpu()
        if not bool(torch.isfinite(r).all()):
            raise ConfigError("reward", "finite rewards", r.tolist())
        loss = self.surrogate(r)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mean_over_processes([p.grad for p in self.policy.parameters() if p.grad is not None])
        self.optimizer.step()
        rate = torch.cat([a for _, a in self._pending]).mean(0)
        self._pending.clear()
        mean_r = r.mean().reshape(1)
        mean_over_processes([mean_r])  # the baseline follows the reward of every process
        mean_r = float(mean_r)
        self.history.append({"reward": mean_r, "baseline": self.baseline,
                             **{f"select/{k}": float(v) for k, v in enumerate(rate)}})
        self.baseline = self.momentum * self.baseline + (1 - self.momentum) * mean_r

    def clear(self) -> None:
        """Forget selections not yet rewarded (e.g. the engine's shape probe before training)."""
        self._pending.clear()

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimizer, sampling generator, baseline, step count, history and selection counts."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline, "steps": self.steps,
                "history": [dict(h) for h in self.history], "selected": self.selected.clone(),
                "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline, self.steps = float(state["baseline"]), int(state["steps"])
        self.history = [dict(h) for h in state["history"]]
        self.selected, self.seen = state["selected"].clone(), state["seen"].clone()

    def selection_rates(self) -> torch.Tensor:
        """Fraction of instances of each gold class that selected each teacher, ``[C, T]`` (NaN if unseen)."""
        return self.selected / self.seen.unsqueeze(1)

    def sample_weights(self, batch: Mapping[str, Any], student_out: Mapping[str, Any],
                       teacher_out: Mapping[str, Any] | None, progress: float) -> torch.Tensor:
        """A ``SampleWeights`` provider: 1 for the samples of ``batch`` that selected a teacher, 0 for the rest.

        ``Term("kd", kl_divergence, teacher=..., sample_weight=weighting.sample_weights)`` keeps a sample's KD
        term only when the policy picked at least one teacher for it (Σ_j a_j ℓ_j / B). It reads the selection
        this weighting made for the batch when the ``Ensemble`` ran on it.
        """
        selected = self.last_selected_any
        size = _batch_size(batch, student_out)
        if selected is None or (size is not None and len(selected) != size):
            raise ConfigError("sample_weight", "the selection of this batch (an Ensemble with this weighting ran on "
                              "it first)", None if selected is None else f"a selection of {len(selected)} samples")
        return selected.float()


def _batch_size(batch: Mapping[str, Any], student_out: Mapping[str, Any]) -> int | None:
    """The batch's sample count, read from its ids or the student's logits (None when neither is there)."""
    for value in (batch.get("index"), student_out.get(LOGITS)):
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return len(value)
    return None


class PolicyReward(Callback):
    """Delivers the student's feedback to a ``ReinforcedWeighting`` after every optimizer step.

    ``kind``: ``"dev_improvement"`` (default: the drop in the student's mean cross-entropy on ``dev`` caused by
    the step), ``"dev_loss"`` (−that loss) or ``"train_loss"`` (−the step's logged ``loss_key``, no dev set).
    ``dev`` is a dataset whose items the ``Distiller``'s collate accepts; it is scored in eval mode, in
    batches of ``batch_size``, after every step.
    """

    def __init__(self, weighting: ReinforcedWeighting, dev: Dataset | None = None,
                 kind: RewardKind = "dev_improvement", loss_key: str = "loss/total", batch_size: int = 256) -> None:
        if kind not in ("dev_improvement", "dev_loss", "train_loss"):
            raise ConfigError("kind", "'dev_improvement', 'dev_loss' or 'train_loss'", kind)
        if kind != "train_loss" and (dev is None or len(dev) == 0):  # type: ignore[arg-type]
            raise ConfigError("dev", f"a non-empty dev set for the {kind!r} reward", dev)
        self.weighting, self.dev, self.kind, self.loss_key = weighting, dev, kind, loss_key
        self.batch_size = _positive_int(batch_size, "batch_size")
        self._batches: list[Any] | None = None
        self._last: float | None = None

    def dev_loss(self, distiller: Distiller) -> float:
        """The student's mean cross-entropy on the dev set (eval mode, no gradients)."""
        if self._batches is None:
            assert self.dev is not None
            items = [self.dev[i] for i in range(len(self.dev))]  # type: ignore[arg-type]
            self._batches = [distiller.collate(items[i: i + self.batch_size])
                             for i in range(0, len(items), self.batch_size)]
        model = unwrap(distiller.student)
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for raw in self._batches:
                batch = distiller.backend.to_device(raw)
                logits = select_logits(distiller.forward(model, batch)).float()
                total += float(F.cross_entropy(logits, batch["label"].long(), reduction="sum"))
                count += len(logits)
        model.train(was_training)
        return total / count

    def on_phase_start(self, distiller: Distiller, phase: Any, total_steps: int) -> None:
        """Drop selections made outside training; score the dev set once before the first step."""
        self.weighting.clear()
        if self.kind == "dev_improvement":
            self._last = self.dev_loss(distiller)

    def on_step_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        """Compute the reward for the step just taken and update the policy."""
        if self.kind == "train_loss":
            reward = -float(logs[self.loss_key])
        else:
            loss = self.dev_loss(distiller)
            if self.kind == "dev_loss":
                reward = -loss
            else:
                reward = (self._last if self._last is not None else loss) - loss
                self._last = loss
        self.weighting.update(torch.tensor(reward))

    def state_dict(self) -> dict[str, Any]:
        """The weighting's state (policy and its optimizer) and the last dev loss, saved in every checkpoint."""
        return {"weighting": self.weighting.state_dict(), "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.weighting.load_state_dict(state["weighting"])
        self._last = state["last"]
