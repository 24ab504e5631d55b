"""Cut Inner Layers (B.-K. Kim, S. Choi, H. Park, "Cut Inner Layers: A Structured Pruning Strategy
for Efficient U-Net GANs", arXiv 2206.14658, 2022), for any U-Net that ``kd_core.structure`` describes
(a model with ``unet_structure()``, such as kd-generative's Pix2Pix generator, or a ``structure=``
given for it).

The paper's three steps (as its abstract and introduction describe them; no code is public):

1. ``layer_sensitivity``: prune a fraction r of one conv/deconv layer's filters at a time (L1 norm,
   structured, no fine-tuning) and score the damage; in U-Nets the layers near the bottleneck
   turn out insensitive (a U-shaped curve over layer index), which is the criterion for 2 and 3.
2. ``prune_inner_layers``: prune a large ratio (50–75%) of the filters of the convolutions of the
   innermost ``levels`` encoders and decoders together (through DepGraph, so the concatenation skips
   that read them shrink too).
3. ``cut_inner_layers``: delete the innermost ``levels`` encoder/decoder pairs. The U-Net becomes
   shallower and its bottleneck moves to a higher resolution. Reconnection: the new innermost decoder
   reads only its own level's skip; its first convolution loses the input channels that carried the
   removed branch, and that branch's mean contribution, measured on calibration inputs, is folded into a
   constant (``kd_edge.prune.unet_fold`` derives it: the mean of ``W_h ⊛ ReLU(h)``, not of ``h``). Every
   kept weight transfers unchanged. The input side must now be divisible by ``2 ** new_depth`` only.
   Fine-tuning afterwards is the caller's job, as in the paper.

Removing levels needs the model to store each level's encoder and decoder as the last items of a
``ModuleList`` (or ``Sequential``) and its forward to run over what those hold; the cut deletes them, runs
the result on the calibration inputs, and notes the deletion as an edit a pruned-model record replays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.structure import UNetStructure, unet_structure
from torch import nn

from kd_edge.prune.common import ExampleInputs, call, check_inputs, check_model, check_ratio, main_output, model_cost
from kd_edge.prune.record import note_edit
from kd_edge.prune.structured import ROOT_TYPES, PruneSummary, output_layers, prune_channels
from kd_edge.prune.unet_fold import fold_constant, measure_branch, slice_inputs

__all__ = ["CUT_EDIT", "check_levels", "cut_inner_layers", "inner_layer_names", "layer_sensitivity",
           "prune_inner_layers", "remove_trailing", "unet_layer_names"]

CUT_EDIT = "cut_inner_levels"  # the record edit: {"op": CUT_EDIT, "paths": [...]} (innermost first)


def check_levels(levels: Any, depth: int, keep: int, argument: str = "levels") -> int:
    """``levels`` if it is an integer in ``[1, depth - keep]``, else a ``ConfigError`` naming ``argument``."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= depth - keep:
        raise ConfigError(argument, f"an integer in [1, {depth - keep}] for a U-Net of depth {depth}", levels)
    return levels


def unet_layer_names(model: nn.Module, structure: UNetStructure | None = None) -> dict[str, tuple[int, str]]:
    """``{layer path: (level, "encoder"|"decoder")}`` for every Linear/Conv/ConvTranspose of each level."""
    structure = unet_structure(check_model(model), structure)
    names: dict[str, tuple[int, str]] = {}
    for index, level in enumerate(structure.levels):
        for side, path in (("encoder", level.encoder), ("decoder", level.decoder)):
            for name, layer in model.get_submodule(path).named_modules():
                if isinstance(layer, ROOT_TYPES):
                    names[f"{path}.{name}" if name else path] = (index, side)
    return names


def inner_layer_names(model: nn.Module, levels: int, structure: UNetStructure | None = None) -> list[str]:
    """The encoder and decoder layer paths of the innermost ``levels`` levels."""
    structure = unet_structure(check_model(model), structure)
    first = structure.depth - check_levels(levels, structure.depth, 0)
    return [name for name, (level, _side) in unet_layer_names(model, structure).items() if level >= first]


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
    output channels, in module order (``unet_layer_names`` gives each one's level and side).
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


def prune_inner_layers(model: nn.Module, example_inputs: ExampleInputs, ratio: float = 0.75, levels: int = 2,
                       importance: str = "l1", structure: UNetStructure | None = None) -> PruneSummary:
    """Prune ``ratio`` of the filters of every encoder and decoder layer of the innermost ``levels``
    levels (in place); the other layers lose only the input channels that the pruned ones fed (layers that
    produce the model's output keep their filters, as ``prune_channels`` guarantees)."""
    structure = unet_structure(check_model(model), structure)
    ratio = check_ratio(ratio)
    levels = check_levels(levels, structure.depth, 0)
    names = inner_layer_names(model, levels, structure)
    summary = prune_channels(model, example_inputs, 0.0, layer_ratios=dict.fromkeys(names, ratio),
                             importance=importance)
    summary.method = "unet-inner"
    summary.settings.update({"levels": levels, "pruned_layers": names})
    return summary


def remove_trailing(model: nn.Module, paths: Sequence[str]) -> None:
    """Delete the modules at ``paths``, in order, each of which must then be the last item of its
    ``ModuleList``/``Sequential`` (what ``cut_inner_layers`` does, and what a record replays)."""
    for path in paths:
        parent_name, _, index = path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else None
        if not isinstance(parent, nn.ModuleList | nn.Sequential) or index != str(len(parent) - 1):
            raise ConfigError("model", "a U-Net whose levels are the last items of ModuleLists (innermost last), "
                              "its forward running over what they hold", path,
                              hint="the innermost encoder and decoder cannot be removed from this model")
        del parent[len(parent) - 1]


def _removed_paths(structure: UNetStructure, new_depth: int) -> list[str]:
    """Encoder then decoder path of each removed level, innermost level first."""
    return [path for level in reversed(structure.levels[new_depth:]) for path in (level.encoder, level.decoder)]


def cut_inner_layers(model: nn.Module, levels: int = 1, example_inputs: ExampleInputs | None = None,
                     structure: UNetStructure | None = None) -> tuple[nn.Module, PruneSummary]:
    """A new, shallower U-Net without the innermost ``levels`` levels (the original is untouched), with
    every kept weight copied over; ``example_inputs`` are the calibration inputs of the fold. See the
    module docstring for the reconnection and ``kd_edge.prune.unet_fold`` for the fold."""
    structure = unet_structure(check_model(model), structure)
    levels = check_levels(levels, structure.depth, 1)
    if example_inputs is None:
        raise ConfigError("example_inputs", "calibration inputs: the removed branch's mean is measured on them",
                          None)
    example_inputs = check_inputs(example_inputs)
    new_depth = structure.depth - levels
    branch = measure_branch(model, structure, new_depth, example_inputs)
    paths = _removed_paths(structure, new_depth)
    new = copy.deepcopy(model)
    remove_trailing(new, paths)
    slice_inputs(new.get_submodule(branch.consumer), branch.keep)
    target = fold_constant(new, structure.levels[new_depth - 1].decoder, branch.consumer, branch.mean)
    note_edit(new, {"op": CUT_EDIT, "paths": paths})
    try:
        after = model_cost(new, example_inputs)
    except ConfigError:
        raise
    except Exception as err:  # the model's forward did not follow the removal
        raise ConfigError("model", "a U-Net whose forward runs over the levels its ModuleLists hold", paths,
                          hint=f"the cut model fails: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    before = model_cost(model, example_inputs)
    summary = PruneSummary("unet-cut", before["params"], after["params"], before["macs"], after["macs"],
                           {"levels": levels, "depth_before": structure.depth, "depth_after": new_depth,
                            "removed": paths, "reconnected": branch.consumer, "branch_mean_folded_into": target})
    return new, summary
