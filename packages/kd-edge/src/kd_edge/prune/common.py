"""What every pruning module shares: argument checks, calling a model on example inputs, and its cost.

Example inputs are a tensor, a tuple of positional tensors, or a dict of keyword tensors (a Hugging
Face model's ``input_ids`` / ``attention_mask``), the three forms torch_pruning also accepts.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ExampleInputs", "call", "check_inputs", "check_model", "check_ratio", "main_output", "model_cost"]

ExampleInputs = torch.Tensor | tuple[Any, ...] | dict[str, Any]


def check_ratio(ratio: Any, argument: str = "ratio") -> float:
    """``ratio`` as a float in [0, 1); anything else is a ``ConfigError`` naming ``argument``."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(argument, "a fraction of channels in [0, 1)", ratio,
                          hint="1.0 would remove every channel; to remove whole layers use layer pruning")
    return float(ratio)


def check_model(model: Any, argument: str = "model") -> nn.Module:
    """``model`` if it is an ``nn.Module``, else a ``ConfigError``."""
    if not isinstance(model, nn.Module):
        raise ConfigError(argument, "a torch.nn.Module", type(model).__name__)
    return model


def check_inputs(example_inputs: Any, argument: str = "example_inputs") -> ExampleInputs:
    """Example inputs as given, if they are a tensor, a non-empty tuple or a non-empty dict."""
    if isinstance(example_inputs, torch.Tensor):
        return example_inputs
    if isinstance(example_inputs, list | tuple) and example_inputs:
        return tuple(example_inputs)
    if isinstance(example_inputs, dict) and example_inputs:
        return example_inputs
    raise ConfigError(argument, "a tensor, a non-empty tuple of tensors or a dict of keyword tensors",
                      type(example_inputs).__name__)


def call(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """``model`` applied to the example inputs (positional, or keywords for a dict)."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, tuple):
        return model(*example_inputs)
    return model(example_inputs)


def main_output(output: Any) -> torch.Tensor:
    """The tensor that stands for a model's output: itself, the first of a tuple, or a HF
    ``last_hidden_state`` / ``logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        for key in ("logits", "last_hidden_state"):
            if key in output:
                return output[key]
        return next(v for v in output.values() if isinstance(v, torch.Tensor))
    if isinstance(output, list | tuple):
        return main_output(output[0])
    raise ConfigError("model", "a model whose output is a tensor, a tuple or a dict of tensors",
                      type(output).__name__)


@torch.no_grad()
def model_cost(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward pass (``torch.utils.flop_counter``, FLOPs // 2;
    matmuls and convolutions only), measured in eval mode; training flags are restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            call(model, example_inputs)
    finally:
        for module, flag in flags:
            module.training = flag
    return {"params": count_parameters(model), "macs": int(counter.get_total_flops()) // 2}
