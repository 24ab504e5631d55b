"""Structured channel pruning through Torch-Pruning's DependencyGraph (Fang et al., "DepGraph: Towards
Any Structural Pruning", CVPR 2023).

Coupled layers shrink together because torch_pruning traces the forward pass: a residual add ties the
channels of both branches, a U-Net concatenation maps each part of the concatenated input back to the
layer that produced it, a ConvTranspose2d is pruned on its own (in, out) layout, BatchNorm and
LayerNorm follow their producer, and attention heads are removed whole (query, key, value and the
output projection's inputs together) when ``num_heads`` is given. Nothing here is hand-written
surgery: only the choice of what to leave alone is ours. Layers whose output channels *are* the
model's output (a classifier, an image head, the residual stream of a transformer) are found from
the traced graph and never used as pruning roots, so the output shape never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from kd_core.errors import ConfigError
from torch import nn

from kd_edge.prune.common import ExampleInputs, call, check_inputs, check_model, check_ratio, model_cost

__all__ = ["IMPORTANCES", "ROOT_TYPES", "PruneSummary", "attention_heads", "output_layers", "prune_channels",
           "resolve_modules"]

IMPORTANCES = ("l1", "l2", "taylor")
ROOT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass
class PruneSummary:
    """What a pruning step did: parameters and MACs before and after, and how it chose."""

    method: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def params_kept(self) -> float:
        """Fraction of parameters left."""
        return self.params_after / max(self.params_before, 1)

    @property
    def macs_kept(self) -> float:
        """Fraction of multiply-accumulates left."""
        return self.macs_after / max(self.macs_before, 1)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, fractions included."""
        return {**asdict(self), "params_kept": self.params_kept, "macs_kept": self.macs_kept}


def resolve_modules(model: nn.Module, names: Iterable[str | nn.Module], argument: str) -> list[nn.Module]:
    """Modules of ``model`` given by name (``"up.0.1"``) or as objects; an unknown name is a ``ConfigError``."""
    by_name = dict(model.named_modules())
    found = []
    for item in names:
        if isinstance(item, nn.Module):
            found.append(item)
        elif isinstance(item, str) and item in by_name:
            found.append(by_name[item])
        else:
            near = [n for n in by_name if n and str(item).split(".")[0] in n][:5]
            raise ConfigError(argument, "module names of the model", item, hint=f"nearby names: {near}")
    return found


def output_layers(model: nn.Module, example_inputs: ExampleInputs) -> list[nn.Module]:
    """The Linear/Conv layers whose output channels reach the model's output without passing another
    Linear/Conv (walking back from the outputs through activations, norms, adds and reshapes)."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    stack = [node for node in graph.module2node.values() if not node.outputs]
    seen, found = set(), []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, ROOT_TYPES):
            found.append(node.module)
            continue
        stack.extend(node.inputs)
    return found


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """``{query/key/value Linear: head count}`` for every BERT-style self-attention module (one with
    ``num_attention_heads`` and ``query``/``key``/``value`` Linear children), the form torch_pruning's
    ``num_heads`` takes."""
    heads: dict[nn.Module, int] = {}
    for module in model.modules():
        count = getattr(module, "num_attention_heads", None)
        projections = [getattr(module, name, None) for name in ("query", "key", "value")]
        if isinstance(count, int) and all(isinstance(p, nn.Linear) for p in projections):
            heads.update({p: count for p in projections})
    return heads


def sync_attention_attributes(model: nn.Module) -> None:
    """After heads were removed, set each attention module's ``num_attention_heads`` and
    ``all_head_size`` from its query projection (the head size is unchanged)."""
    for module in model.modules():
        query = getattr(module, "query", None)
        size = getattr(module, "attention_head_size", None)
        if isinstance(query, nn.Linear) and isinstance(size, int) and hasattr(module, "num_attention_heads"):
            module.num_attention_heads = query.out_features // size
            if hasattr(module, "all_head_size"):
                module.all_head_size = query.out_features


def _importance(name: str, loss_fn: Callable[[nn.Module], torch.Tensor] | None) -> tp.importance.Importance:
    if name not in IMPORTANCES:
        raise ConfigError("importance", f"one of {list(IMPORTANCES)}", name)
    if name == "taylor":
        if not callable(loss_fn):
            raise ConfigError("loss_fn", "a callable model -> scalar loss (Taylor importance needs gradients)",
                              loss_fn)
        return tp.importance.TaylorImportance()
    return tp.importance.MagnitudeImportance(p=1 if name == "l1" else 2)


def prune_channels(model: nn.Module, example_inputs: ExampleInputs, ratio: float, *, importance: str = "l1",
                   global_pruning: bool = False, layer_ratios: Mapping[str, float] | None = None,
                   ignored_layers: Iterable[str | nn.Module] = (), heads: bool | None = None,
                   head_ratio: float | None = None, loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
                   round_to: int | None = None) -> PruneSummary:
    """Remove the least important ``ratio`` of output channels (in place) and return what changed.

    ``ratio`` applies to every prunable group (``global_pruning=False``) or to all of them together,
    ranked across layers (``True``; torch_pruning normalises scores per layer by their mean).
    ``layer_ratios`` (module name → ratio) overrides the ratio of the groups those layers root, and
    ``ratio`` then applies to the rest (0 leaves them alone). ``heads`` (default: whenever the model
    has BERT-style attention) removes whole attention heads at ``head_ratio`` (default ``ratio``)
    and keeps each head's size. ``importance``: ``l1``/``l2`` filter magnitude, or ``taylor``
    (|weight·gradient|, gradients of ``loss_fn(model)``).
    """
    check_model(model)
    example_inputs = check_inputs(example_inputs)
    ratio = check_ratio(ratio)
    ratios = {name: check_ratio(value, f"layer_ratios[{name!r}]") for name, value in (layer_ratios or {}).items()}
    scorer = _importance(importance, loss_fn)
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ConfigError("round_to", "a positive integer or None", round_to)
    head_map = attention_heads(model)
    use_heads = bool(head_map) if heads is None else bool(heads)
    if use_heads and not head_map:
        raise ConfigError("heads", "a model with BERT-style attention (num_attention_heads, query/key/value)",
                          type(model).__name__)
    head_ratio = ratio if head_ratio is None else check_ratio(head_ratio, "head_ratio")
    ignored = resolve_modules(model, ignored_layers, "ignored_layers")
    ratio_modules = dict(zip(resolve_modules(model, ratios, "layer_ratios"), ratios.values(), strict=True))

    before = model_cost(model, example_inputs)
    ignored += [m for m in output_layers(model, example_inputs) if m not in ignored]
    options: dict[str, Any] = {}
    use_heads = use_heads and head_ratio > 0
    if use_heads:
        options = {"num_heads": head_map, "prune_num_heads": True, "prune_head_dims": False,
                   "head_pruning_ratio": head_ratio}
        # torch_pruning removes heads (locally) only inside a q/k/v group whose width ratio is > 0; with
        # prune_head_dims=False that ratio only triggers head removal, so give those groups head_ratio.
        for projection in head_map:
            ratio_modules.setdefault(projection, head_ratio)
    pruner = tp.pruner.BasePruner(model, example_inputs, importance=scorer, pruning_ratio=ratio,
                                  pruning_ratio_dict=ratio_modules or None, global_pruning=global_pruning,
                                  ignored_layers=ignored, round_to=round_to, **options)
    if importance == "taylor":
        model.zero_grad()
        loss_fn(model).backward()  # type: ignore[misc]  # checked callable above
    pruner.step()
    if importance == "taylor":
        model.zero_grad()
    if use_heads:
        sync_attention_attributes(model)
    with torch.no_grad():
        call(model.eval(), example_inputs)  # the pruned model must still run
    after = model_cost(model, example_inputs)
    settings = {"ratio": ratio, "importance": importance, "global_pruning": global_pruning,
                "layer_ratios": ratios, "heads": use_heads, "head_ratio": head_ratio if use_heads else None,
                "ignored_layers": [name for name, m in model.named_modules() if m in ignored]}
    return PruneSummary("channels", before["params"], after["params"], before["macs"], after["macs"], settings)
