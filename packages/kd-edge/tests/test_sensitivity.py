"""Per-layer INT8 sensitivity finds a planted fragile layer; mixed precision keeping it in FP16 (the default, as
in Kim et al.) or FP32 recovers; the kept layers are really stored in the precision asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.data.digits import demo_data, train_classifier
from kd_edge.export import export_onnx, onnx_session, run_onnx
from kd_edge.quantize import compute_precisions, quantize_static_int8
from kd_edge.sensitivity import layer_sensitivity, mixed_precision, sqnr_db
from torch import nn


class Shift(nn.Module):
    """Adds a constant per feature (an ONNX ``Add``, not a compute layer, so never quantized itself)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A trained MLP whose last Linear ("6") gets an input feature of constant 1000 that it ignores (zero
    weights): the FP32 function is unchanged, but a per-tensor INT8 range for that input crushes every other
    feature into one or two quantization steps. The first two Linears are untouched."""
    data = demo_data(calibration_size=128, test_size=300)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), Shift(64),
                          nn.Linear(64, 10))
    train_classifier(model, data.train_x, data.train_y, epochs=4)
    before = model(data.test_x)
    with torch.no_grad():
        model[5].shift[0] = 1000.0
        model[6].weight[:, 0] = 0.0
    torch.testing.assert_close(model(data.test_x).argmax(1), before.argmax(1), rtol=0, atol=0)
    path = export_onnx(model, data.test_x[:2], tmp_path_factory.mktemp("s") / "planted.onnx").path
    return path, data


def test_sqnr_by_hand() -> None:
    ref = np.array([3.0, 4.0])  # signal energy 25
    assert sqnr_db(ref, ref + np.array([0.5, 0.0])) == pytest.approx(10 * np.log10(25 / 0.25))
    assert sqnr_db(ref, ref) == 300.0


def test_planted_fragile_layer_ranks_first_and_mixed_precision_recovers(planted, tmp_path: Path) -> None:
    path, data = planted
    report = layer_sensitivity(path, data.calib_x, data.test_x, data.test_y)
    assert report.layers[0].module == "6"
    first, others = report.layers[0], report.layers[1:]
    assert first.rank == 1 and all(first.sqnr_db + 10 < other.sqnr_db for other in others)
    assert first.metric_delta < -0.02  # the fragile layer alone costs accuracy ...
    assert all(abs(other.metric_delta) <= 0.01 for other in others)  # ... the others (almost) none
    # by task metric the same layer comes first
    assert layer_sensitivity(path, data.calib_x, data.test_x, data.test_y, rank_by="metric").layers[0].module == "6"

    reference = run_onnx(onnx_session(path), data.test_x)
    scores = {}
    for k, keep in ((0, "fp16"), (1, "fp32"), (1, "fp16")):
        result = mixed_precision(path, report, k, tmp_path / f"k{k}{keep}.onnx", data.calib_x, keep=keep)
        out = run_onnx(onnx_session(result.path), data.test_x)
        scores[(k, keep)] = (sqnr_db(reference, out), float((out.argmax(1) == data.test_y.numpy()).mean()))
        assert len(result.quantized_layers) == 3 - k and result.excluded == report.ranking[:k]
    fp32_accuracy = report.fp32_metric
    all_int8_sqnr, all_int8_accuracy = scores[(0, "fp16")]
    assert all_int8_accuracy < fp32_accuracy - 0.02
    for keep in ("fp32", "fp16"):
        sqnr, acc = scores[(1, keep)]
        assert sqnr > all_int8_sqnr + 10
        assert fp32_accuracy - acc <= 0.5 * (fp32_accuracy - all_int8_accuracy)  # recovers >= half the loss


def _kept(path: str, name: str) -> tuple[onnx.NodeProto, dict[str, onnx.TensorProto], dict[str, onnx.NodeProto]]:
    graph = onnx.load(path).graph
    producers = {out: n for n in graph.node for out in n.output}
    return next(n for n in graph.node if n.name == name), {i.name: i for i in graph.initializer}, producers


def test_kept_layers_are_fp16_by_default(planted, tmp_path: Path) -> None:
    path, data = planted
    result = mixed_precision(path, ["node_linear_2", "node_linear"], 2, tmp_path / "m.onnx", data.calib_x)
    assert result.mode == "mixed-int8-fp16" and result.excluded == ["node_linear_2", "node_linear"]
    for name in result.excluded:  # saved with FP16 weights and bias, fed FP16 by a Cast, never quantized
        node, weights, producers = _kept(result.path, name)
        assert [weights[i].data_type for i in node.input[1:]] == [onnx.TensorProto.FLOAT16] * 2
        cast = producers[node.input[0]]
        assert cast.op_type == "Cast" and onnx.helper.get_attribute_value(cast.attribute[0]) == onnx.TensorProto.FLOAT16
        assert name not in result.quantized_layers
    assert result.op_counts["Cast"] == 4  # one in, one out per kept layer
    assert len(result.quantized_layers) == 1  # the remaining Linear is INT8
    # FP16 weights, not FP32 ones: the output moves (a little) against the same model kept in FP32
    fp32 = mixed_precision(path, result.excluded, 2, tmp_path / "m32.onnx", data.calib_x, keep="fp32")
    half, full = (run_onnx(onnx_session(r.path), data.test_x) for r in (result, fp32))
    assert np.abs(half - full).max() > 0 and sqnr_db(full, half) > 40


def test_keep_fp32_leaves_the_kept_layers_in_float32(planted, tmp_path: Path) -> None:
    path, data = planted
    result = mixed_precision(path, ["node_linear_2"], 1, tmp_path / "m.onnx", data.calib_x, keep="fp32")
    node, weights, producers = _kept(result.path, "node_linear_2")
    assert result.mode == "mixed-int8-fp32" and "Cast" not in result.op_counts
    assert [weights[i].data_type for i in node.input[1:]] == [onnx.TensorProto.FLOAT] * 2
    assert node.input[1] not in producers  # a plain float32 initializer, no DequantizeLinear in front
    assert "node_linear_2" not in result.quantized_layers and len(result.quantized_layers) == 2


def test_k0_is_all_int8_whatever_keep(planted, tmp_path: Path) -> None:
    path, data = planted
    all_int8 = run_onnx(onnx_session(quantize_static_int8(path, tmp_path / "i.onnx", data.calib_x).path), data.test_x)
    for keep in ("fp16", "fp32"):
        result = mixed_precision(path, ["node_linear_2"], 0, tmp_path / f"{keep}.onnx", data.calib_x, keep=keep)
        assert result.mode == "static-int8" and result.excluded == [] and "Cast" not in result.op_counts
        np.testing.assert_array_equal(run_onnx(onnx_session(result.path), data.test_x), all_int8)


def test_compute_precisions_counts_the_kernels_ort_ran(planted, tmp_path: Path) -> None:
    path, data = planted
    assert compute_precisions(path, data.test_x[:2]) == {"float": 3}
    mixed = mixed_precision(path, ["node_linear_2"], 1, tmp_path / "m.onnx", data.calib_x)
    counts = compute_precisions(mixed.path, data.test_x[:2])
    assert sum(counts.values()) == 3 and counts.get("uint8", 0) + counts.get("int8", 0) >= 1
    # an FP16 layer runs either on an FP16 kernel or, on a CPU without one (x86-64), on FP32 behind casts
    assert counts.get("float16", 0) + counts.get("float", 0) >= 1
    with pytest.raises(ConfigError) as info:
        compute_precisions(path, data.test_x[:2], threads=0)
    assert info.value.argument == "threads"
    with pytest.raises(ConfigError) as info:
        compute_precisions(path, data.test_x[:0])
    assert info.value.argument == "inputs"


def test_bad_arguments(planted, tmp_path: Path) -> None:
    path, data = planted
    with pytest.raises(ConfigError, match="k") as info:
        mixed_precision(path, ["node_linear"], 2, tmp_path / "m.onnx", data.calib_x)
    assert info.value.argument == "k"
    with pytest.raises(ConfigError) as info:
        mixed_precision(path, ["node_linear"], 1, tmp_path / "m.onnx", data.calib_x, keep="bf16")
    assert info.value.argument == "keep"
    with pytest.raises(ConfigError, match="layers"):
        layer_sensitivity(path, data.calib_x, data.test_x, layers=["nope"])
    with pytest.raises(ConfigError, match="calibration"):
        layer_sensitivity(path, [], data.test_x)
    with pytest.raises(ConfigError, match="model_path"):
        layer_sensitivity(tmp_path / "missing.onnx", data.calib_x, data.test_x)
