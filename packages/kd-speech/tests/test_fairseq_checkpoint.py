"""The fairseq checkpoint reader: a class outside the allow-list is refused before it runs; a vq-wav2vec file written
here in fairseq's layout (zip and legacy torch.save formats) loads into ``VqWav2Vec`` with the same predictions."""

from __future__ import annotations

import argparse
import collections
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from kd_core.errors import CheckpointError
from kd_speech.models import (
    ALLOWED_GLOBALS,
    config_from_fairseq_args,
    load_fairseq_vq_wav2vec,
    read_fairseq_checkpoint,
)
from kd_speech.models.fairseq_checkpoint import InertObject, restricted_load
from torch import nn

CONV = [(64, 10, 5), (64, 8, 4), (64, 4, 4), (64, 4, 2)]
AGGREGATOR = [(64, 2, 1), (48, 3, 1), (48, 4, 1)]
GROUPS, VARS, STEPS = 2, 16, 4


def fairseq_args(vq_type: str = "gumbel") -> argparse.Namespace:
    """``args`` as fairseq's wav2vec model stores them (layer lists as strings, ``offset`` 'auto')."""
    return argparse.Namespace(
        arch="wav2vec", task="audio_pretraining", criterion="wav2vec", conv_feature_layers=str(CONV),
        conv_aggregator_layers=str(AGGREGATOR), aggregator="cnn", vq_type=vq_type, vq_vars=VARS, vq_groups=GROUPS,
        vq_dim=0, vq_depth=2, combine_groups=False, vq_temp="(2.0, 0.5, 0.999995)", vq_gamma=0.25,
        prediction_steps=STEPS, num_negatives=10, offset="auto", activation="gelu", skip_connections_agg=True,
        residual_scale=0.5, log_compression=False, skip_connections_feat=False, agg_zero_pad=False,
        project_features="none", non_affine_group_norm=False, no_conv_bias=False, dropout=0.0, lr=[1e-5],
        max_sample_size=150000, seed=2)


def fairseq_state(vq_type: str = "gumbel", seed: int = 0) -> collections.OrderedDict[str, torch.Tensor]:
    """Random weights under fairseq's parameter names and shapes for the architecture of ``fairseq_args``."""
    generator = torch.Generator().manual_seed(seed)
    state: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def put(name: str, *shape: int) -> None:
        state[name] = torch.randn(*shape, generator=generator) * 0.1

    channels = 1
    for i, (out, kernel, _) in enumerate(CONV):  # Conv1d (no bias), Dropout, GroupNorm, activation
        put(f"feature_extractor.conv_layers.{i}.0.weight", out, channels, kernel)
        put(f"feature_extractor.conv_layers.{i}.2.weight", out)
        put(f"feature_extractor.conv_layers.{i}.2.bias", out)
        channels = out
    dim = channels
    if vq_type == "gumbel":  # vq_depth 2: (Linear, activation) then Linear
        put("vector_quantizer.vars", 1, GROUPS * VARS, dim // GROUPS)
        put("vector_quantizer.weight_proj.0.0.weight", 2 * dim, dim)
        put("vector_quantizer.weight_proj.0.0.bias", 2 * dim)
        put("vector_quantizer.weight_proj.1.weight", GROUPS * VARS, 2 * dim)
        put("vector_quantizer.weight_proj.1.bias", GROUPS * VARS)
    else:  # grouped 1x1 conv and GroupNorm, codewords [V, G, d]
        put("vector_quantizer.embedding", VARS, GROUPS, dim // GROUPS)
        put("vector_quantizer.projection.0.weight", dim, dim // GROUPS, 1)
        put("vector_quantizer.projection.1.weight", dim)
        put("vector_quantizer.projection.1.bias", dim)
    channels = dim
    for i, (out, kernel, _) in enumerate(AGGREGATOR):  # pad, Conv1d, Dropout, GroupNorm, activation
        put(f"feature_aggregator.conv_layers.{i}.1.weight", out, channels, kernel)
        put(f"feature_aggregator.conv_layers.{i}.1.bias", out)
        put(f"feature_aggregator.conv_layers.{i}.3.weight", out)
        put(f"feature_aggregator.conv_layers.{i}.3.bias", out)
        if channels != out:
            put(f"feature_aggregator.residual_proj.{i}.weight", out, channels, 1)
        channels = out
    put("wav2vec_predictions.project_to_steps.weight", channels, dim, 1, STEPS)  # ConvTranspose2d(in, out, (1, K))
    put("wav2vec_predictions.project_to_steps.bias", dim)
    return state


def write_checkpoint(path: Path, vq_type: str = "gumbel", legacy: bool = False, **extra: Any) -> dict[str, Any]:
    checkpoint = {
        "args": fairseq_args(vq_type),
        "model": fairseq_state(vq_type),
        "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": np.float64(3.25)}, "num_updates": 300000}],
        "extra_state": {"epoch": 12, "train_iterator": {"epoch": 12, "iterations_in_epoch": 0},
                        "val_loss": 3.25, "seen": {1, 2}},
        "last_optimizer_state": {"state": {0: {"step": 3, "exp_avg": torch.zeros(3)}},
                                 "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.98)}]},
    }
    checkpoint.update(extra)
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return checkpoint


# --- refusals ----------------------------------------------------------------------------------------------------


class Payload:
    """Pickles as a call to ``function(*args)``: what a hostile checkpoint does."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


class Meter:
    """Stands for a training meter class that a checkpoint may keep in ``extra_state``."""

    def __init__(self) -> None:
        self.sum, self.count = 6.5, 2


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("payload", ["system", "eval", "getattr"])
def test_a_class_outside_the_allow_list_is_refused_without_running(tmp_path: Path, legacy: bool,
                                                                    payload: str) -> None:
    marker = tmp_path / "ran"
    function, args, name = {
        "system": (os.system, (f"touch {marker}",), f"{os.system.__module__}.system"),
        "eval": (eval, (f"open({str(marker)!r}, 'w')",), "builtins.eval"),
        "getattr": (getattr, ("text", "upper"), "builtins.getattr"),
    }[payload]
    path = tmp_path / "hostile.pt"
    write_checkpoint(path, legacy=legacy, extra_state={"epoch": 1, "hook": Payload(function, *args)})
    with pytest.raises(CheckpointError) as error:
        read_fairseq_checkpoint(path)
    assert error.value.received == name
    assert name in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def test_the_allow_list_holds_no_callable_that_reaches_code() -> None:
    for forbidden in ("builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__", "os.system",
                      "posix.system", "subprocess.Popen", "torch.load", "copyreg._reconstructor",
                      "torch._utils._rebuild_parameter_with_state", "numpy.core.multiarray._reconstruct"):
        assert forbidden not in ALLOWED_GLOBALS


def test_a_trusted_module_can_be_read_as_inert_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "meters.pt"
    write_checkpoint(path, extra_state={"meters": {"loss": Meter()}})
    name = f"{Meter.__module__}.Meter"
    with pytest.raises(CheckpointError, match="Meter") as error:
        read_fairseq_checkpoint(path)
    assert error.value.received == name
    checkpoint = read_fairseq_checkpoint(path, inert_modules=[Meter.__module__])
    meter = checkpoint.extra["extra_state"]["meters"]["loss"]
    assert isinstance(meter, InertObject) and not isinstance(meter, Meter)
    assert meter.qualified_name == name and meter.state == {"sum": 6.5, "count": 2}


def test_unreadable_files_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing\.pt"):
        restricted_load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        restricted_load(garbage)
    no_model = tmp_path / "no_model.pt"
    torch.save({"args": fairseq_args()}, no_model)
    with pytest.raises(CheckpointError, match="'model'"):
        read_fairseq_checkpoint(no_model)
    truncated = tmp_path / "truncated.pt"
    write_checkpoint(truncated, legacy=True)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"truncated\.pt"):
        read_fairseq_checkpoint(truncated)


# --- loading ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vq_type", ["gumbel", "kmeans"])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_fairseq_vq_wav2vec_checkpoint_loads_by_name(tmp_path: Path, vq_type: str, legacy: bool) -> None:
    path = tmp_path / "vq-wav2vec.pt"
    written = write_checkpoint(path, vq_type=vq_type, legacy=legacy)
    checkpoint = read_fairseq_checkpoint(path)
    assert checkpoint.args == fairseq_args(vq_type)
    assert checkpoint.extra["extra_state"]["seen"] == {1, 2}
    assert checkpoint.extra["optimizer_history"][0]["lr_scheduler_state"]["best"] == 3.25

    model, report = load_fairseq_vq_wav2vec(path)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.converted) == ["wav2vec_predictions.project_to_steps.bias",
                                        "wav2vec_predictions.project_to_steps.weight"]
    config = model.config
    assert (config.quantizer, config.activation, config.weight_proj_depth) == (vq_type, "gelu", 2)
    assert config.prediction_offset == math.ceil(345 / 160)  # fairseq's 'auto': receptive field over stride
    assert config.conv_layers == tuple(CONV) and config.aggregator_layers == tuple(AGGREGATOR)
    if vq_type == "gumbel":
        assert model.vector_quantizer.temperature == pytest.approx(max(2.0 * 0.999995**300000, 0.5))

    own = model.state_dict()
    for name, tensor in written["model"].items():
        if not name.startswith("wav2vec_predictions"):
            assert torch.equal(own[name], tensor), name

    # the step maps compute what fairseq's ConvTranspose2d computes
    reference = nn.ConvTranspose2d(48, 64, (1, STEPS))
    reference.load_state_dict({"weight": written["model"]["wav2vec_predictions.project_to_steps.weight"],
                               "bias": written["model"]["wav2vec_predictions.project_to_steps.bias"]})
    context = torch.randn(2, 48, 10)
    expected = reference(context.unsqueeze(-1)).permute(0, 3, 2, 1)  # [B, D, T, K] -> [B, K, T, D]
    torch.testing.assert_close(model.predictor(context), expected)

    wave = torch.randn(1, 8000)
    assert model.tokens(wave).shape == (1, model.num_frames(8000))
    assert torch.isfinite(model.train()(wave).loss)


def test_missing_and_unexpected_names_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    state = fairseq_state()
    del state["vector_quantizer.vars"]
    state["feature_aggregator.gru.weight"] = torch.zeros(3)
    torch.save({"args": fairseq_args(), "model": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_fairseq_vq_wav2vec(path)
    assert "vector_quantizer.vars" in str(error.value) and "feature_aggregator.gru.weight" in str(error.value)
    model, report = load_fairseq_vq_wav2vec(path, strict=False)
    assert report.missing == ["vector_quantizer.vars"] and report.unexpected == ["feature_aggregator.gru.weight"]
    assert torch.equal(model.state_dict()["vector_quantizer.weight_proj.1.bias"],
                       state["vector_quantizer.weight_proj.1.bias"])
    assert "missing from the checkpoint: vector_quantizer.vars" in report.summary()


def test_a_shape_mismatch_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "bad_shape.pt"
    state = fairseq_state()
    state["feature_extractor.conv_layers.1.0.weight"] = torch.zeros(64, 64, 3)
    torch.save({"args": fairseq_args(), "model": state}, path)
    with pytest.raises(CheckpointError, match=r"feature_extractor\.conv_layers\.1\.0\.weight"):
        load_fairseq_vq_wav2vec(path)


@pytest.mark.parametrize(("change", "named"), [
    ({"vq_type": "none"}, "vq_type"),
    ({"aggregator": "gru"}, "aggregator"),
    ({"project_features": "same"}, "project_features"),
    ({"conv_feature_layers": "[(64, 10)]"}, "conv_feature_layers"),
])
def test_architectures_this_model_lacks_are_refused(change: dict, named: str) -> None:
    args = fairseq_args()
    for key, value in change.items():
        setattr(args, key, value)
    with pytest.raises(CheckpointError, match=named):
        config_from_fairseq_args(args)
