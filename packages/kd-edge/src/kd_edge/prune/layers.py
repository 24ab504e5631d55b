"""Layer (depth) pruning: remove whole blocks from a stack of same-shaped blocks.

Two kinds of stack: a transformer encoder (a Hugging Face ``encoder.layer`` ``ModuleList``; the model's
``config.num_hidden_layers`` and each kept layer's ``layer_idx`` are renumbered to stay consistent)
and a residual stack (an ``nn.Sequential``/``ModuleList`` of residual blocks, e.g. ResNet ``blocks``),
where only blocks whose input and output shapes match (identity shortcut) may go. The removal is
noted on the model (``kd_edge.prune.record``) so a saved pruned model rebuilds the same stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_edge.prune.common import ExampleInputs, call, check_inputs, check_model, model_cost
from kd_edge.prune.record import note_edit
from kd_edge.prune.structured import PruneSummary

__all__ = ["STACK_NAMES", "apply_drop", "check_indices", "drop_layers", "find_stack"]

STACK_NAMES = ("encoder.layer", "bert.encoder.layer", "model.encoder.layer", "blocks", "layers")


def find_stack(model: nn.Module, container: str | None = None) -> tuple[str, nn.Module]:
    """The block stack to prune: ``container`` if given, else the first of ``STACK_NAMES`` present."""
    modules = dict(model.named_modules())
    names = [container] if container is not None else list(STACK_NAMES)
    for name in names:
        stack = modules.get(name)
        if isinstance(stack, nn.ModuleList | nn.Sequential):
            return name, stack
    if container is not None:
        raise ConfigError("container", "the name of an nn.ModuleList or nn.Sequential of blocks", container)
    raise ConfigError("container", f"a model with a block stack named one of {list(STACK_NAMES)}",
                      type(model).__name__, hint="pass container='path.to.blocks'")


def check_indices(layers: Any, count: int) -> list[int]:
    """``layers`` as sorted unique indices into a stack of ``count`` blocks, one block left at least."""
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, Sequence) or isinstance(layers, str) or not layers:
        raise ConfigError("layers", f"a non-empty list of layer indices in [0, {count - 1}]", layers)
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ConfigError("layers", f"layer indices in [0, {count - 1}] (the stack has {count} layers)", index)
    unique = sorted(set(layers))
    if len(unique) >= count:
        raise ConfigError("layers", f"at most {count - 1} of the {count} layers (one must remain)", layers)
    return unique


def _shapes_match(stack: nn.Module, model: nn.Module, example_inputs: ExampleInputs) -> dict[int, bool]:
    """Per block index: does its first output have its first input's shape?"""
    seen: dict[int, bool] = {}
    hooks = []
    for index, block in enumerate(stack):
        def hook(_module: nn.Module, args: tuple, kwargs: dict, output: Any, index: int = index) -> None:
            first_in = args[0] if args else next(iter(kwargs.values()), None)
            first_out = output[0] if isinstance(output, tuple) else output
            if isinstance(first_in, torch.Tensor) and isinstance(first_out, torch.Tensor):
                seen[index] = tuple(first_in.shape) == tuple(first_out.shape)
        hooks.append(block.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            call(model.eval(), example_inputs)
    finally:
        for handle in hooks:
            handle.remove()
    return seen


def apply_drop(model: nn.Module, container: str, indices: Sequence[int]) -> None:
    """Remove ``indices`` from the stack ``container`` and renumber what depends on the count: a HF
    ``config.num_hidden_layers`` and each kept block's ``layer_idx`` attributes."""
    _, stack = find_stack(model, container)
    kept = [block for i, block in enumerate(stack) if i not in set(indices)]
    parent_name, _, child = container.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    new_stack = nn.ModuleList(kept) if isinstance(stack, nn.ModuleList) else nn.Sequential(*kept)
    setattr(parent, child, new_stack)
    for position, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers") and container.endswith("encoder.layer"):
        config.num_hidden_layers = len(kept)


def drop_layers(model: nn.Module, layers: Sequence[int], container: str | None = None,
                example_inputs: ExampleInputs | None = None) -> PruneSummary:
    """Remove the blocks at ``layers`` (indices into the stack) in place and return what changed.

    With ``example_inputs`` every dropped block is first checked to map its input shape to the same
    output shape (a residual block with an identity shortcut; always true for transformer layers), and
    parameters/MACs are measured before and after. An index outside the stack, a repeated list that
    would remove every block, or a block that changes shape is a ``ConfigError`` naming ``layers``.
    """
    check_model(model)
    name, stack = find_stack(model, container)
    indices = check_indices(layers, len(stack))
    before: dict[str, int] = {"params": sum(p.numel() for p in model.parameters()), "macs": 0}
    if example_inputs is not None:
        example_inputs = check_inputs(example_inputs)
        matches = _shapes_match(stack, model, example_inputs)
        bad = [i for i in indices if not matches.get(i, False)]
        if bad:
            raise ConfigError("layers", "indices of blocks whose input and output shapes match (identity shortcut)",
                              bad, hint=f"blocks that keep their shape: {[i for i, ok in matches.items() if ok]}")
        before = model_cost(model, example_inputs)
    apply_drop(model, name, indices)
    note_edit(model, {"op": "drop_layers", "container": name, "indices": indices})
    after = {"params": sum(p.numel() for p in model.parameters()), "macs": 0}
    if example_inputs is not None:
        after = model_cost(model, example_inputs)
    return PruneSummary("layers", before["params"], after["params"], before["macs"], after["macs"],
                        {"container": name, "layers": indices, "blocks_before": len(stack),
                         "blocks_after": len(stack) - len(indices)})
