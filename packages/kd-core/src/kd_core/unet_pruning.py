"""The U-Net pruning plugin protocol: what a package publishing under ``kd.unet_pruning`` provides.

The method is that of B.-K. Kim, S. Choi and H. Park, "Cut Inner Layers: A Structured Pruning Strategy for Efficient
U-Net GANs" (arXiv:2206.14658, 2022): a per-layer sensitivity scan (the layers near the bottleneck turn out
insensitive), pruning most filters of the innermost levels, cutting the innermost levels away, and global L1 filter
pruning as the baseline. A domain that has U-Nets (kd-generative) uses it without importing the package that
implements it (kd-edge), through four named plugins (``kd_core.plugins``)::

    prune = unet_pruning(INNER)                    # a ConfigError saying "pip install kd-edge" if missing
    summary = prune(model, example_inputs, ratio=0.75, levels=3)

The model is any U-Net that ``kd_core.structure`` describes (its ``unet_structure()``, or ``structure=``);
``example_inputs`` is a tensor, a tuple of positional tensors or a dict of keyword tensors. Every plugin checks its
arguments and raises ``kd_core.errors.ConfigError`` naming the one at fault. Layers producing the model's output
channels keep their filters, so the output shape never changes. A ``PruneResult`` says what a step did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from torch import nn

from kd_core.errors import ConfigError
from kd_core.plugins import load_plugins
from kd_core.structure import UNetStructure

__all__ = ["CUT", "GLOBAL", "GROUP", "INNER", "NAMES", "PROVIDER", "SENSITIVITY", "GlobalPruning", "InnerCut",
           "InnerPruning", "PruneResult", "SensitivityScan", "unet_pruning"]

#: The entry-point group the plugins are published under.
GROUP = "kd.unet_pruning"
#: The distribution that publishes them (named in the error when one is missing).
PROVIDER = "kd-edge"
SENSITIVITY, INNER, CUT, GLOBAL = "sensitivity", "inner", "cut", "global"
#: Every plugin name of the group, each with its protocol below.
NAMES = (SENSITIVITY, INNER, CUT, GLOBAL)


class PruneResult(Protocol):
    """What a pruning step reports: parameters and multiply-accumulates (one forward pass of the example inputs)
    before and after, and the settings it used."""

    method: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    settings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""


class SensitivityScan(Protocol):
    """``sensitivity``: per-layer sensitivity, the paper's step 1.

    One row ``{"layer", "ratio", "score", "params_kept"}`` per (layer, ratio): ``ratio`` of that one layer's filters
    pruned (``importance``: ``"l1"`` filter norm, structured, no fine-tuning) on a copy of ``model``, scored by
    ``score_fn(pruned, example_inputs)`` (default: mean |output − unpruned output| on ``example_inputs``). ``layers``
    defaults to every Linear/Conv/ConvTranspose not producing the model's output, in module order. ``model`` is
    left unchanged."""

    def __call__(self, model: nn.Module, example_inputs: Any, ratios: Sequence[float] = ...,
                 layers: Sequence[str] | None = ..., importance: str = ...,
                 score_fn: Callable[[nn.Module, Any], float] | None = ...) -> list[dict[str, Any]]:
        """Score every (layer, ratio)."""


class InnerPruning(Protocol):
    """``inner``: prune ``ratio`` (in [0, 1)) of the filters of every encoder and decoder layer of the innermost
    ``levels`` levels together, in place (the paper's step 2); the concatenation skips that read them shrink too.
    ``levels`` in [1, depth]."""

    def __call__(self, model: nn.Module, example_inputs: Any, ratio: float = ..., levels: int = ...,
                 importance: str = ..., structure: UNetStructure | None = ...) -> PruneResult:
        """Prune ``model`` in place."""


class InnerCut(Protocol):
    """``cut``: a new U-Net without the innermost ``levels`` levels (in [1, depth − 1]; ``model`` is untouched),
    the paper's step 3. The new innermost decoder reads its own skip only; the mean contribution of the removed
    branch, measured on the calibration ``example_inputs`` (required), is folded into a constant of that decoder.
    Returns the new model and its ``PruneResult``."""

    def __call__(self, model: nn.Module, levels: int = ..., example_inputs: Any = ...,
                 structure: UNetStructure | None = ...) -> tuple[nn.Module, PruneResult]:
        """Cut a copy of ``model``."""


class GlobalPruning(Protocol):
    """``global``: the baseline, filter pruning ranked across all layers (``importance``: ``"l1"``), in place, at
    the ratio that leaves ``target_params`` parameters within ``tolerance`` (a fraction of ``target_params``); a
    target that no ratio reaches is a ``ConfigError``. ``global_pruning=False`` prunes every layer by the same ratio
    instead (uniform pruning at the same size)."""

    def __call__(self, model: nn.Module, example_inputs: Any, target_params: int, *, importance: str = ...,
                 tolerance: float = ..., global_pruning: bool = ...) -> PruneResult:
        """Prune ``model`` in place to about ``target_params`` parameters."""


def unet_pruning(names: Iterable[str] = NAMES, argument: str = "plugin") -> dict[str, Callable[..., Any]]:
    """The installed plugins ``names`` (default: all four), imported now; a missing one is a
    ``kd_core.plugins.PluginError`` naming the group, the name, ``argument`` and "pip install kd-edge"."""
    names = list(names)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ConfigError("names", f"U-Net pruning plugin names among {list(NAMES)}", unknown)
    return load_plugins(GROUP, names, provider=PROVIDER, argument=argument)
