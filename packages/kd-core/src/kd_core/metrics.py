"""Evaluation metrics: accuracy, NLL, Brier, calibration (ECE), divergence to soft labels, model size,
MACs, latency, and mean ± std over seeds.

Conventions:
- classification metrics take raw logits, never probabilities; the class axis is the last one and
  every leading axis is a sample (``logits [..., C]`` pairs with ``labels [...]``);
- every metric returns a Python ``float`` (or a small dataclass of floats), computed without
  gradients, with per-sample values accumulated in float64;
- bad input raises :class:`~kd_core.errors.ConfigError` naming the argument.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kd_core.errors import ConfigError

__all__ = [
    "CalibrationResult",
    "LatencyResult",
    "accuracy",
    "brier_score",
    "classification_metrics",
    "count_macs",
    "count_parameters",
    "expected_calibration_error",
    "format_mean_std",
    "js_divergence_to_soft_labels",
    "kl_to_soft_labels",
    "mean_std",
    "measure_latency",
    "negative_log_likelihood",
]


# --------------------------------------------------------------------------------------------------
# input checks


def _as_logits(logits: Any, argument: str = "logits") -> tuple[torch.Tensor, tuple[int, ...]]:
    """Return ``logits`` as a detached floating tensor [N, C] (leading axes flattened) and their
    leading shape (everything but the class axis)."""
    if not isinstance(logits, torch.Tensor):
        try:
            logits = torch.as_tensor(logits)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(argument, "a tensor of raw scores [N, C]", type(logits).__name__) from None
    logits = logits.detach()
    if not logits.is_floating_point():
        raise ConfigError(argument, "a floating-point tensor of raw scores (logits)", str(logits.dtype))
    if logits.dim() < 2 or logits.shape[-1] < 1:
        raise ConfigError(argument, "a tensor of shape [N, C] (class axis last)", tuple(logits.shape))
    leading = tuple(logits.shape[:-1])
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logits = logits.reshape(-1, logits.shape[-1])
    if logits.shape[0] == 0:
        raise ConfigError(argument, "at least one sample", f"shape {(*leading, logits.shape[-1])}")
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ConfigError(argument, "finite scores (no NaN or +inf)", "a tensor containing NaN or +inf")
    return logits, leading


def _as_labels(labels: Any, logits: torch.Tensor, leading_shape: tuple[int, ...]) -> torch.Tensor:
    """Return ``labels`` as a flat int64 tensor on the logits' device, checked against the logits."""
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError("labels", "a tensor of class indices", type(labels).__name__) from None
    labels = labels.detach()
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ConfigError("labels", "an integer tensor of class indices", str(labels.dtype),
                          hint="pass class indices, not one-hot rows or probabilities")
    if tuple(labels.shape) != leading_shape:
        raise ConfigError("labels", f"shape {leading_shape} (one class index per row of logits)",
                          tuple(labels.shape))
    labels = labels.reshape(-1).to(device=logits.device, dtype=torch.long)
    n_classes = logits.shape[-1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ConfigError("labels", f"class indices in [0, {n_classes - 1}]",
                          f"values in [{int(labels.min())}, {int(labels.max())}]")
    return labels


def _logits_and_labels(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    flat, leading = _as_logits(logits)
    return flat, _as_labels(labels, flat, leading)


def _logits_and_soft_labels(logits: Any, soft_labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    flat, leading = _as_logits(logits)
    if not isinstance(soft_labels, torch.Tensor):
        try:
            soft_labels = torch.as_tensor(soft_labels)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError("soft_labels", "a tensor of probability rows", type(soft_labels).__name__) from None
    soft = soft_labels.detach()
    if not soft.is_floating_point():
        raise ConfigError("soft_labels", "a floating-point tensor of probability rows", str(soft.dtype))
    shape = (*leading, flat.shape[-1])
    if tuple(soft.shape) != shape:
        raise ConfigError("soft_labels", f"the shape of logits {shape}", tuple(soft.shape))
    soft = soft.reshape(flat.shape).to(device=flat.device, dtype=torch.float64)
    if not torch.isfinite(soft).all() or (soft < 0).any():
        raise ConfigError("soft_labels", "finite, non-negative probabilities",
                          "a tensor with negative or non-finite entries",
                          hint="pass probabilities (e.g. softmax of the teacher's logits), not logits")
    row_sums = soft.sum(dim=-1)
    if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3, rtol=0.0):
        worst = float((row_sums - 1).abs().max())
        raise ConfigError("soft_labels", "rows that sum to 1 (within 1e-3)",
                          f"a row sum off by {worst:.3g}", hint="normalise each row first")
    return flat, soft


def _check_int(value: Any, argument: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(argument, f"an integer >= {minimum}", value)
    return value


# --------------------------------------------------------------------------------------------------
# classification metrics


@torch.no_grad()
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose arg-max class equals the label (ties go to the lowest index)."""
    logits, labels = _logits_and_labels(logits, labels)
    return float((logits.argmax(dim=-1) == labels).double().mean())


@torch.no_grad()
def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the labels, ``-log_softmax(logits)[label]`` (natural log)."""
    logits, labels = _logits_and_labels(logits, labels)
    log_probs = F.log_softmax(logits, dim=-1)
    return float(-log_probs.gather(-1, labels[:, None]).squeeze(-1).double().mean())


@torch.no_grad()
def brier_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over samples of ``sum_c (p_c - onehot_c)^2`` with ``p = softmax(logits)`` (range [0, 2])."""
    logits, labels = _logits_and_labels(logits, labels)
    probs = F.softmax(logits, dim=-1).double()
    onehot = F.one_hot(labels, num_classes=probs.shape[-1]).double()
    return float(((probs - onehot) ** 2).sum(dim=-1).mean())


@dataclass
class CalibrationResult:
    """Expected calibration error and the per-bin statistics behind a reliability diagram.

    ``bin_edges`` has ``n_bins + 1`` entries from 0 to 1; bin ``b`` holds the samples whose confidence
    lies in ``(bin_edges[b], bin_edges[b + 1]]``. Empty bins have count 0 and confidence/accuracy 0.0.
    """

    ece: float
    bin_edges: list[float]
    bin_confidence: list[float]
    bin_accuracy: list[float]
    bin_count: list[int]


@torch.no_grad()
def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> CalibrationResult:
    """ECE with ``n_bins`` equal-width confidence bins over (0, 1] (Guo et al., 2017).

    Confidence is the largest softmax probability; ``ECE = sum_b |B_b| / N * |acc_b - conf_b|``.
    """
    n_bins = _check_int(n_bins, "n_bins", 1)
    logits, labels = _logits_and_labels(logits, labels)
    probs = F.softmax(logits, dim=-1)
    confidence, predicted = probs.max(dim=-1)
    confidence = confidence.double()
    correct = (predicted == labels).double()
    # bin b covers (b / n, (b + 1) / n]: index = ceil(conf * n) - 1, clamped for conf at the ends
    index = (torch.ceil(confidence * n_bins).long() - 1).clamp_(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=index.device).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64, device=index.device).index_add_(0, index, correct)
    safe = count.clamp_min(1.0)
    bin_conf = conf_sum / safe
    bin_acc = acc_sum / safe
    ece = float(((count / index.numel()) * (bin_acc - bin_conf).abs()).sum())
    return CalibrationResult(
        ece=ece,
        bin_edges=[b / n_bins for b in range(n_bins + 1)],
        bin_confidence=bin_conf.tolist(),
        bin_accuracy=bin_acc.tolist(),
        bin_count=[int(c) for c in count.tolist()],
    )


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """The usual classification report: ``{"accuracy", "nll", "ece", "brier"}`` as floats."""
    n_bins = _check_int(n_bins, "n_bins", 1)
    return {
        "accuracy": accuracy(logits, labels),
        "nll": negative_log_likelihood(logits, labels),
        "ece": expected_calibration_error(logits, labels, n_bins=n_bins).ece,
        "brier": brier_score(logits, labels),
    }


# --------------------------------------------------------------------------------------------------
# agreement with soft labels (e.g. a teacher's probabilities)


def _kl_rows(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(p ‖ q) with 0 · log 0 = 0, also where q is 0 (log_q = -inf)."""
    cross = torch.where(p > 0, p * log_q, torch.zeros_like(p))
    return (torch.xlogy(p, p) - cross).sum(dim=-1)


@torch.no_grad()
def kl_to_soft_labels(logits: torch.Tensor, soft_labels: torch.Tensor) -> float:
    """Mean over samples of ``KL(soft_labels ‖ softmax(logits))`` in nats; zero entries are allowed."""
    logits, soft = _logits_and_soft_labels(logits, soft_labels)
    log_q = F.log_softmax(logits.double(), dim=-1)
    return float(_kl_rows(soft, log_q).mean())


@torch.no_grad()
def js_divergence_to_soft_labels(logits: torch.Tensor, soft_labels: torch.Tensor) -> float:
    """Mean Jensen–Shannon divergence between ``soft_labels`` and ``softmax(logits)`` in nats (<= ln 2)."""
    logits, soft = _logits_and_soft_labels(logits, soft_labels)
    q = F.softmax(logits.double(), dim=-1)
    m = 0.5 * (soft + q)
    log_m = torch.log(m)  # -inf only where both soft and q are 0, which _kl_rows masks out
    jsd = 0.5 * _kl_rows(soft, log_m) + 0.5 * _kl_rows(q, log_m)
    return float(jsd.clamp_min(0.0).mean())


# --------------------------------------------------------------------------------------------------
# model cost


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once); only ``requires_grad`` ones if asked."""
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _EvalMode:
    """Put every submodule in eval mode and give each back its own training flag afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> nn.Module:
        self.flags = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for module, flag in self.flags:
            module.training = flag


def count_macs(model: nn.Module, *example_inputs: Any) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (FLOPs // 2).

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` under ``torch.no_grad`` in eval mode;
    the model's training flags are restored afterwards. Only operators the counter knows (matmuls,
    convolutions, attention) are counted; element-wise work such as activations and norms is not.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    if not example_inputs:
        raise ConfigError("example_inputs", "at least one input for the forward pass", "none")
    counter = FlopCounterMode(display=False)
    with _EvalMode(model), torch.no_grad(), counter:
        model(*example_inputs)
    return int(counter.get_total_flops()) // 2


@dataclass
class LatencyResult:
    """Wall-clock time of one forward pass in milliseconds, over ``iterations`` timed runs."""

    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    iterations: int
    batch_size: int


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _cuda_devices(model: nn.Module, inputs: tuple[Any, ...]) -> set[torch.device]:
    devices = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    for item in inputs:
        tensor = _first_tensor(item)
        if tensor is not None:
            devices.add(tensor.device)
    return {device for device in devices if device.type == "cuda"}


def measure_latency(model: nn.Module, *example_inputs: Any, warmup: int = 5, iterations: int = 30) -> LatencyResult:
    """Time ``model(*example_inputs)`` in eval and inference mode: ``warmup`` untimed runs, then
    ``iterations`` timed ones with ``time.perf_counter`` (CUDA is synchronised around each run).

    ``batch_size`` is the first dimension of the first input tensor (1 for a scalar input).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    if not example_inputs:
        raise ConfigError("example_inputs", "at least one input for the forward pass", "none")
    warmup = _check_int(warmup, "warmup", 0)
    iterations = _check_int(iterations, "iterations", 1)
    first = _first_tensor(example_inputs[0])
    batch_size = int(first.shape[0]) if first is not None and first.dim() > 0 else 1
    cuda = sorted(_cuda_devices(model, example_inputs), key=str)

    def synchronize() -> None:
        for device in cuda:
            torch.cuda.synchronize(device)

    times_ms: list[float] = []
    with _EvalMode(model), torch.inference_mode():
        for _ in range(warmup):
            model(*example_inputs)
        synchronize()
        for _ in range(iterations):
            start = time.perf_counter()
            model(*example_inputs)
            synchronize()
            times_ms.append((time.perf_counter() - start) * 1000.0)
    mean, std = mean_std(times_ms)
    ordered = sorted(times_ms)
    return LatencyResult(
        mean_ms=mean,
        std_ms=std,
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        iterations=iterations,
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------------------------------
# aggregation over seeds


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of ``values``; the std of a single value is 0.0."""
    if isinstance(values, torch.Tensor):
        values = values.detach().reshape(-1).tolist()
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError("values", "an iterable of numbers", values) from None
    if not numbers:
        raise ConfigError("values", "at least one value", numbers)
    if len(numbers) == 1:
        return numbers[0], 0.0
    return statistics.fmean(numbers), statistics.stdev(numbers)


def format_mean_std(values: Iterable[float], digits: int = 2, scale: float = 1.0) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` with ``digits`` decimals, e.g. ``"97.31 ± 0.42"``."""
    digits = _check_int(digits, "digits", 0)
    mean, std = mean_std(values)
    return f"{mean * scale:.{digits}f} ± {std * abs(scale):.{digits}f}"
