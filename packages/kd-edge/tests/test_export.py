"""ONNX export (dynamo) and the PyTorch-vs-ORT parity check; export failures name the operator."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from kd_core.errors import ConfigError, KDError
from kd_edge.export import ExportError, export_onnx, failing_operator, parity
from kd_edge.models.small import build_model
from torch import nn


@torch.library.custom_op("kd_edge_test::wobble", mutates_args=())
def wobble(x: torch.Tensor) -> torch.Tensor:
    """An operator with no ONNX lowering in either exporter."""
    return x * 2


@wobble.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Wobbly(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return wobble(x) + 1


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_export_then_parity_within_tolerance(tmp_path: Path, name: str) -> None:
    model = build_model(name)
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = export_onnx(model, x[:2], tmp_path / "m.onnx")
    assert result.exporter == "dynamo" and result.dynamo_error == ""
    graph = onnx.load(result.path).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch axis is symbolic
    labels = model(x).argmax(1)  # PyTorch is right on every sample by construction
    check = parity(model, result.path, x, labels, save_to=tmp_path / "parity.json")
    assert check.samples == 40 and check.passed and check.max_abs_error < 1e-4
    assert check.torch_metric == 1.0 and abs(check.metric_delta) <= 1 / 40
    assert json.loads((tmp_path / "parity.json").read_text())["max_abs_error"] == check.max_abs_error


def test_parity_detects_a_different_model(tmp_path: Path) -> None:
    model = build_model("mlp")
    path = export_onnx(model, torch.zeros(2, 1, 8, 8), tmp_path / "m.onnx").path
    with torch.no_grad():
        model.layers[-1].bias += 0.5  # PyTorch side changed after export: every logit moves by 0.5
    check = parity(model, path, torch.randn(8, 1, 8, 8))
    assert not check.passed and check.max_abs_error == pytest.approx(0.5, abs=1e-4)


def test_export_failure_names_the_operator(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(Wobbly(), torch.randn(2, 3), tmp_path / "bad.onnx")
    assert isinstance(info.value, KDError) and info.value.argument == "model"
    assert "kd_edge_test" in str(info.value) and "wobble" in str(info.value)
    assert not (tmp_path / "bad.onnx").exists()


def test_failing_operator_reads_both_exporters_messages() -> None:
    assert failing_operator("No ONNX function found for <OpOverload(op='aten.foo', overload='default')>") == "aten.foo"
    assert failing_operator("ONNX export failed on an operator with unrecognized namespace my::op.") == "my::op"
    assert failing_operator("nothing useful") is None


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    model = build_model("mlp")
    with pytest.raises(ConfigError, match="path"):
        export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.pt")
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx", opset=3)
    with pytest.raises(ConfigError, match="onnx_path"):
        parity(model, tmp_path / "missing.onnx", torch.zeros(1, 1, 8, 8))
