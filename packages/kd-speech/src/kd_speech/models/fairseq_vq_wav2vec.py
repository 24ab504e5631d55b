"""Load fairseq vq-wav2vec checkpoints into ``VqWav2Vec``: its ``args`` to a config, its parameters by name.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453). The file is read by :func:`kd_speech.models.fairseq_checkpoint.read_fairseq_checkpoint`
(a restricted unpickler; fairseq itself is not needed). ``VqWav2Vec`` names its submodules as fairseq does,
so ``feature_extractor.*``, ``vector_quantizer.*`` and ``feature_aggregator.*`` load unchanged; fairseq's
future-step projection ``wav2vec_predictions.project_to_steps`` (a ``ConvTranspose2d`` with weight
``[C, D, 1, K]`` and one bias shared by the steps) becomes ``predictor.weight`` ``[K, D, C]`` and
``predictor.bias`` ``[K, D]`` (the shared bias repeated per step), which computes the same predictions.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kd_core.errors import CheckpointError

from kd_speech.models.conv_encoder import WAV2VEC_AGGREGATOR_LAYERS, WAV2VEC_CONV_LAYERS, receptive_field, total_stride
from kd_speech.models.fairseq_checkpoint import read_fairseq_checkpoint
from kd_speech.models.vq_wav2vec import VqWav2Vec, VqWav2VecConfig

__all__ = ["LoadReport", "config_from_fairseq_args", "convert_fairseq_state_dict", "load_fairseq_state_dict",
           "load_fairseq_vq_wav2vec"]

_PROJECT = "wav2vec_predictions.project_to_steps."


@dataclass
class LoadReport:
    """What a load did: ``loaded`` parameter names, ``converted`` fairseq names that were reshaped or renamed,
    ``missing`` model names the checkpoint lacked and ``unexpected`` checkpoint names the model lacks."""

    loaded: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        text = f"loaded {len(self.loaded)} tensors ({len(self.converted)} converted)"
        if self.missing:
            text += f"; missing from the checkpoint: {', '.join(self.missing)}"
        if self.unexpected:
            text += f"; not in the model: {', '.join(self.unexpected)}"
        return text


def _layers(source: str, name: str, value: Any) -> tuple[tuple[int, int, int], ...]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise CheckpointError(source, f"args.{name} as a list of (channels, kernel, stride)", value) from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, list | tuple) and len(v) == 3 for v in value):
        raise CheckpointError(source, f"args.{name} as a list of (channels, kernel, stride)", value)
    return tuple((int(c), int(k), int(s)) for c, k, s in value)


def config_from_fairseq_args(args: argparse.Namespace, source: str = "args") -> VqWav2VecConfig:
    """The ``VqWav2VecConfig`` of a fairseq wav2vec model's ``args`` (fairseq's defaults where a field is absent).

    A plain wav2vec (``vq_type`` none), a GRU aggregator, non-affine group norms or projected features are
    refused with a ``CheckpointError``: this model does not have them.
    """
    def get(name: str, default: Any) -> Any:
        return getattr(args, name, default)

    vq_type = get("vq_type", "none")
    if vq_type not in ("gumbel", "kmeans"):
        raise CheckpointError(source, "a vq-wav2vec checkpoint (args.vq_type 'gumbel' or 'kmeans')", vq_type)
    for name, supported in (("aggregator", "cnn"), ("project_features", "none"), ("non_affine_group_norm", False)):
        if get(name, supported) != supported:
            raise CheckpointError(source, f"args.{name} = {supported!r} (what VqWav2Vec implements)", get(name, None))
    conv = _layers(source, "conv_feature_layers", get("conv_feature_layers", WAV2VEC_CONV_LAYERS))
    aggregator = _layers(source, "conv_aggregator_layers", get("conv_aggregator_layers", WAV2VEC_AGGREGATOR_LAYERS))
    offset = get("offset", "auto")
    if offset == "auto":
        offset = math.ceil(receptive_field(conv) / total_stride(conv))
    temperature = get("vq_temp", (2.0, 0.5, 0.999995))
    if isinstance(temperature, str):
        temperature = ast.literal_eval(temperature)
    vq_dim = int(get("vq_dim", 0) or 0)
    try:
        return VqWav2VecConfig(
            conv_layers=conv, aggregator_layers=aggregator, quantizer=vq_type, groups=int(get("vq_groups", 2)),
            num_vars=int(get("vq_vars", 320)), vq_dim=vq_dim if vq_type == "gumbel" and vq_dim > 0 else None,
            combine_groups=bool(get("combine_groups", False)), weight_proj_depth=int(get("vq_depth", 1)),
            temperature=tuple(float(t) for t in temperature), gamma=float(get("vq_gamma", 0.25)),
            prediction_steps=int(get("prediction_steps", 12)), num_negatives=int(get("num_negatives", 10)),
            prediction_offset=int(offset), activation=str(get("activation", "relu")),
            log_compression=bool(get("log_compression", False)),
            skip_connections_feat=bool(get("skip_connections_feat", False)),
            skip_connections_agg=bool(get("skip_connections_agg", False)),
            residual_scale=float(get("residual_scale", 0.5)), aggregator_bias=not bool(get("no_conv_bias", False)),
            zero_pad=bool(get("agg_zero_pad", False)))
    except (ValueError, TypeError) as error:
        raise CheckpointError(source, "args that describe a valid vq-wav2vec model", type(error).__name__,
                              hint=str(error)) from None


def convert_fairseq_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(state dict in VqWav2Vec's names, fairseq names that were converted)``; other names pass unchanged."""
    converted: dict[str, torch.Tensor] = {}
    renamed: list[str] = []
    for name, tensor in state.items():
        if name == _PROJECT + "weight" and tensor.dim() == 4 and tensor.shape[2] == 1:
            converted["predictor.weight"] = tensor[:, :, 0, :].permute(2, 1, 0).contiguous()
            renamed.append(name)
        elif name == _PROJECT + "bias" and tensor.dim() == 1:
            steps = state.get(_PROJECT + "weight")
            count = steps.shape[-1] if isinstance(steps, torch.Tensor) and steps.dim() == 4 else 1
            converted["predictor.bias"] = tensor.unsqueeze(0).repeat(count, 1)
            renamed.append(name)
        else:
            converted[name] = tensor
    return converted, renamed


def load_fairseq_state_dict(model: VqWav2Vec, state: Mapping[str, torch.Tensor], strict: bool = True,
                            source: str = "state_dict") -> LoadReport:
    """Copy a fairseq state dict into ``model``; with ``strict`` a missing or unexpected name is an error.

    A shape mismatch is always a ``CheckpointError`` naming the parameter and both shapes.
    """
    converted, renamed = convert_fairseq_state_dict(state)
    own = model.state_dict()
    report = LoadReport(converted=renamed)
    report.missing = [name for name in own if name not in converted]
    report.unexpected = [name for name in converted if name not in own]
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(source, "parameters that match the model name for name",
                              f"missing {report.missing}, unexpected {report.unexpected}",
                              hint="pass strict=False to load the names that match and get them in the report")
    for name, tensor in converted.items():
        if name not in own:
            continue
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(source, f"{name} of shape {tuple(own[name].shape)}", tuple(tensor.shape))
        report.loaded.append(name)
    with torch.no_grad():
        for name in report.loaded:
            own[name].copy_(converted[name])
    return report


def load_fairseq_vq_wav2vec(path: str | Path, strict: bool = True,
                            inert_modules: Iterable[str] = ()) -> tuple[VqWav2Vec, LoadReport]:
    """A ``VqWav2Vec`` built from a fairseq vq-wav2vec checkpoint's ``args`` and loaded with its weights."""
    checkpoint = read_fairseq_checkpoint(path, inert_modules=inert_modules)
    if checkpoint.args is None:
        raise CheckpointError(checkpoint.path, "a fairseq checkpoint with 'args' (an argparse.Namespace)",
                              sorted(checkpoint.extra), hint="checkpoints with an omegaconf 'cfg' are not supported")
    config = config_from_fairseq_args(checkpoint.args, source=checkpoint.path)
    model = VqWav2Vec(config)
    report = load_fairseq_state_dict(model, checkpoint.model, strict=strict, source=checkpoint.path)
    model.set_num_updates(_num_updates(checkpoint.extra))
    model.eval()
    return model, report


def _num_updates(extra: Mapping[str, Any]) -> int:
    history = extra.get("optimizer_history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        value = history[-1].get("num_updates", 0)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0
