"""Filter pruning to a target parameter count: the global-pruning baseline of Cut Inner Layers (B.-K. Kim, S. Choi,
H. Park, "Cut Inner Layers: A Structured Pruning Strategy for Efficient U-Net GANs", arXiv 2206.14658, 2022).

The paper compares pruning the inner layers of a U-Net with global L1 filter pruning (filters ranked across all
layers) at the same parameter count. ``prune_channels`` takes a ratio of channels, not a size, so
``prune_to_params`` bisects the ratio (trial prunes on copies; the parameter count falls as the ratio rises) until
the pruned model has ``target_params`` within the tolerance, then prunes the model itself at that ratio.
``global_pruning=False`` does the same for uniform pruning (every layer by the same ratio).
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from torch import nn

from kd_edge.prune.common import ExampleInputs, check_inputs, check_model
from kd_edge.prune.structured import PruneSummary, prune_channels

__all__ = ["MAX_RATIO", "RESOLUTION", "prune_to_params"]

#: The largest ratio the search tries (a ratio of 1 would remove every channel).
MAX_RATIO = 0.95
#: The search stops when the bracket is this narrow (far below one channel of any layer's width).
RESOLUTION = 1e-4


def _check_target(target_params: Any, params: int) -> int:
    if isinstance(target_params, bool) or not isinstance(target_params, numbers.Integral) \
            or not 0 < int(target_params) < params:
        raise ConfigError("target_params", f"a parameter count in [1, {params - 1}] (the model has {params:,})",
                          target_params)
    return int(target_params)


def _check_tolerance(tolerance: Any) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0.0 < float(tolerance) < 1.0:
        raise ConfigError("tolerance", "a relative tolerance in (0, 1), e.g. 0.02", tolerance)
    return float(tolerance)


def prune_to_params(model: nn.Module, example_inputs: ExampleInputs, target_params: int, *, importance: str = "l1",
                    tolerance: float = 0.02, global_pruning: bool = True, max_steps: int = 30) -> PruneSummary:
    """Prune ``model``'s filters in place (ranked across layers, or uniformly with ``global_pruning=False``) at the
    ratio whose parameter count is closest to ``target_params``, found by bisection; that count must lie within
    ``tolerance · target_params`` of the target, else a ``ConfigError`` (before ``model`` is touched). The summary's
    settings add ``target_params``, ``params_error`` (relative) and the ``search`` (ratio, params) trials."""
    check_model(model)
    example_inputs = check_inputs(example_inputs)
    before = count_parameters(model)
    target = _check_target(target_params, before)
    tolerance = _check_tolerance(tolerance)
    if not isinstance(global_pruning, bool):
        raise ConfigError("global_pruning", "True or False", global_pruning)

    def trial(ratio: float) -> int:
        pruned = copy.deepcopy(model)
        prune_channels(pruned, example_inputs, ratio, importance=importance, global_pruning=global_pruning)
        return count_parameters(pruned)

    search: list[tuple[float, int]] = [(0.0, before), (MAX_RATIO, trial(MAX_RATIO))]
    low, high = 0.0, MAX_RATIO
    for _ in range(max_steps):
        if min(abs(p - target) for _, p in search) <= tolerance * target / 4 or high - low < RESOLUTION:
            break
        middle = (low + high) / 2
        params = trial(middle)
        search.append((middle, params))
        low, high = (middle, high) if params > target else (low, middle)
    ratio, params = min(search, key=lambda trial_: abs(trial_[1] - target))
    if abs(params - target) > tolerance * target:
        kind = "global" if global_pruning else "uniform"
        raise ConfigError("target_params", f"a count that {kind} pruning of this model reaches within {tolerance:.0%}",
                          target, hint=f"the closest found: {params:,} parameters at ratio {ratio:.4f} (a larger "
                          "tolerance, or a target further from the smallest the model allows)")
    summary = prune_channels(model, example_inputs, ratio, importance=importance, global_pruning=global_pruning)
    summary.method = "global-to-params" if global_pruning else "uniform-to-params"
    summary.settings.update({"target_params": target, "params_error": (summary.params_after - target) / target,
                             "tolerance": tolerance, "search": [[r, p] for r, p in search]})
    return summary
