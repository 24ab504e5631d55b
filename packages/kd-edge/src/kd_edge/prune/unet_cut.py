"""Cut Inner Layers (B.-K. Kim, S. Choi, H. Park, "Cut Inner Layers: A Structured Pruning Strategy
for Efficient U-Net GANs", arXiv 2206.14658, 2022), for ``kd_edge.models.unet.UNetGenerator``.

The paper's three steps (as its abstract and introduction describe them; no code is public):

1. ``layer_sensitivity``: prune a fraction r of one conv/deconv layer's filters at a time (L1 norm,
   structured, no fine-tuning) and score the damage; in U-Nets the layers near the bottleneck
   turn out insensitive (a U-shaped curve over layer index), which is the criterion for 2 and 3.
2. ``prune_inner_layers``: prune a large ratio (50–75%) of the filters of the innermost ``levels``
   encoder and decoder layers together (through DepGraph, so the concatenation skips that read them
   shrink too).
3. ``cut_inner_layers``: delete the innermost ``levels`` encoder/decoder pairs. The U-Net becomes
   shallower and its bottleneck moves to a higher resolution. Reconnection: the new innermost
   decoder layer reads only its own level's skip (the encoder output that it used to concatenate);
   the input channels that carried the removed branch are dropped from its ConvTranspose weight, and
   that branch's mean activation (measured on ``example_inputs``, or the BatchNorm shift of the removed
   decoder output without them) is folded into the layer's bias. The innermost encoder layer keeps its
   BatchNorm (``innermost_norm=True``), so every kept weight transfers unchanged. The input side must
   now be divisible by ``2 ** new_depth`` only. Fine-tuning afterwards is the caller's job, as in the paper.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_edge.models.unet import UNetGenerator, build_unet
from kd_edge.prune.common import ExampleInputs, call, check_inputs, check_model, check_ratio, main_output, model_cost
from kd_edge.prune.record import attach_source, conform, encode_attribute, module_attributes
from kd_edge.prune.structured import ROOT_TYPES, PruneSummary, output_layers, prune_channels

__all__ = ["UNET_BUILDER", "cut_inner_layers", "layer_sensitivity", "prune_inner_layers", "unet_layer_names"]

UNET_BUILDER = "kd_edge.models.unet:build_unet"


def _check_unet(model: Any) -> UNetGenerator:
    if not isinstance(model, UNetGenerator):
        raise ConfigError("model", "a kd_edge.models.unet.UNetGenerator (build_unet)", type(model).__name__)
    return model


def _check_levels(levels: Any, depth: int, keep: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= depth - keep:
        raise ConfigError("levels", f"an integer in [1, {depth - keep}] for a U-Net of depth {depth}", levels)
    return levels


def unet_layer_names(model: UNetGenerator) -> dict[str, tuple[int, str]]:
    """``{conv name: (level, "down"|"up")}`` for every encoder conv and decoder deconv of the U-Net."""
    _check_unet(model)
    names: dict[str, tuple[int, str]] = {}
    for level in range(model.depth):
        for side, stack in (("down", model.down), ("up", model.up)):
            for index, layer in enumerate(stack[level]):
                if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                    names[f"{side}.{level}.{index}"] = (level, side)
    return names


def _output_distance(reference: torch.Tensor) -> Callable[[nn.Module, ExampleInputs], float]:
    def score(model: nn.Module, example_inputs: ExampleInputs) -> float:
        with torch.no_grad():
            return float((main_output(call(model.eval(), example_inputs)) - reference).abs().mean())
    return score


def layer_sensitivity(model: nn.Module, example_inputs: ExampleInputs, ratios: Sequence[float] = (0.5, 0.75),
                      layers: Sequence[str] | None = None, importance: str = "l1",
                      score_fn: Callable[[nn.Module, ExampleInputs], float] | None = None) -> list[dict[str, Any]]:
    """One row per (layer, ratio): prune ``ratio`` of that layer's filters alone (a copy of ``model``)
    and score it with ``score_fn(pruned, example_inputs)`` (default: mean |output − unpruned output|
    on ``example_inputs``; pass a task metric such as a Fréchet distance for the paper's curve).

    ``layers`` defaults to every Linear/Conv/ConvTranspose layer except those producing the model's
    output channels, in module order.
    """
    check_model(model)
    example_inputs = check_inputs(example_inputs)
    ratios = [check_ratio(r, "ratios") for r in ratios]
    if not ratios:
        raise ConfigError("ratios", "at least one pruning ratio in [0, 1)", ratios)
    outputs = output_layers(model, example_inputs)
    candidates = [name for name, m in model.named_modules() if isinstance(m, ROOT_TYPES) and m not in outputs]
    if layers is None:
        layers = candidates
    for name in layers:
        if name not in candidates:
            raise ConfigError("layers", "names of prunable (non-output) Linear/Conv layers", name,
                              hint=f"candidates: {candidates[:8]}")
    if score_fn is None:
        with torch.no_grad():
            score_fn = _output_distance(main_output(call(copy.deepcopy(model).eval(), example_inputs)))
    rows = []
    for name in layers:
        for ratio in ratios:
            pruned = copy.deepcopy(model)
            summary = prune_channels(pruned, example_inputs, 0.0, layer_ratios={name: ratio}, importance=importance)
            rows.append({"layer": name, "ratio": ratio, "score": float(score_fn(pruned, example_inputs)),
                         "params_kept": summary.params_kept})
    return rows


def inner_layer_names(model: UNetGenerator, levels: int) -> list[str]:
    """The encoder conv and decoder deconv names of the innermost ``levels`` levels."""
    first = model.depth - levels
    return [name for name, (level, _side) in unet_layer_names(model).items() if level >= first]


def prune_inner_layers(model: UNetGenerator, example_inputs: ExampleInputs, ratio: float = 0.75, levels: int = 2,
                       importance: str = "l1") -> PruneSummary:
    """Prune ``ratio`` of the filters of every encoder and decoder layer of the innermost ``levels``
    levels (in place); the other layers lose only the input channels that the pruned ones fed."""
    _check_unet(model)
    ratio = check_ratio(ratio)
    levels = _check_levels(levels, model.depth, 0)
    names = inner_layer_names(model, levels)
    summary = prune_channels(model, example_inputs, 0.0, layer_ratios=dict.fromkeys(names, ratio),
                             importance=importance)
    summary.method = "unet-inner"
    summary.settings.update({"levels": levels, "pruned_layers": names})
    return summary


def _branch_mean(model: UNetGenerator, new_depth: int, skip: int, example_inputs: ExampleInputs | None
                 ) -> torch.Tensor:
    """Mean per channel of the removed branch where it entered decoder level ``new_depth - 1``."""
    if example_inputs is None:
        norm = model.up[new_depth][-1]
        if isinstance(norm, nn.BatchNorm2d) and norm.affine:
            return norm.bias.detach().clone()
        return torch.zeros(model.up[new_depth - 1][1].in_channels - skip)
    captured: list[torch.Tensor] = []
    handle = model.up[new_depth - 1].register_forward_pre_hook(
        lambda _m, args: captured.append(args[0][:, skip:].detach().mean(dim=(0, 2, 3))))
    try:
        with torch.no_grad():
            call(model.eval(), example_inputs)
    finally:
        handle.remove()
    return captured[0]


def cut_inner_layers(model: UNetGenerator, levels: int = 1, example_inputs: ExampleInputs | None = None
                     ) -> tuple[UNetGenerator, PruneSummary]:
    """A new, shallower U-Net without the innermost ``levels`` levels (the original is untouched),
    with every kept weight copied over; see the module docstring for the reconnection."""
    _check_unet(model)
    levels = _check_levels(levels, model.depth, 2)
    if example_inputs is not None:
        example_inputs = check_inputs(example_inputs)
    new_depth = model.depth - levels
    widths = [stack[-1].num_features if isinstance(stack[-1], nn.BatchNorm2d) else stack[-1].out_channels
              for stack in model.down]
    first = model.down[0][0]
    kwargs = {"in_channels": first.in_channels, "out_channels": model.up[0][1].out_channels, "depth": new_depth,
              "widths": widths[:new_depth], "innermost_norm": True}
    new = attach_source(build_unet(**kwargs), UNET_BUILDER, kwargs)
    # every kept module keeps its (possibly pruned) attributes and tensors ...
    old_state = model.state_dict()
    old_attrs = module_attributes(model)
    new_names = set(dict(new.named_modules()))
    attributes = {name: values for name, values in old_attrs.items() if name and name in new_names}
    state = {name: old_state[name] for name in new.state_dict()}
    # ... except the new innermost decoder layer, which loses the inputs of the removed branch
    deconv_name = f"up.{new_depth - 1}.1"
    skip = widths[new_depth - 1]
    deconv: nn.ConvTranspose2d = model.up[new_depth - 1][1]
    weight = old_state[f"{deconv_name}.weight"]
    mean = _branch_mean(model, new_depth, skip, example_inputs).to(weight.dtype)
    state[f"{deconv_name}.weight"] = weight[:skip].clone()
    if deconv.bias is not None:
        spread = deconv.stride[0] * deconv.stride[1]  # each output pixel sees 1/stride² of the kernel taps
        fold = torch.einsum("c,cohw->o", mean, weight[skip:]) / spread
        state[f"{deconv_name}.bias"] = old_state[f"{deconv_name}.bias"] + fold
    attributes[deconv_name] = {**attributes.get(deconv_name, {}), "in_channels": skip}
    conform(new, {k: list(v.shape) for k, v in state.items()},
            {name: {k: encode_attribute(v) for k, v in values.items()} for name, values in attributes.items()})
    new.load_state_dict(state)
    new.train(model.training)
    before = model_cost(model, example_inputs) if example_inputs is not None else None
    after = model_cost(new, example_inputs) if example_inputs is not None else None
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in new.parameters()))
    summary = PruneSummary("unet-cut", params[0], params[1], before["macs"] if before else 0,
                           after["macs"] if after else 0,
                           {"levels": levels, "depth_before": model.depth, "depth_after": new_depth,
                            "branch_mean_from": "example_inputs" if example_inputs is not None else "batchnorm"})
    return new, summary

