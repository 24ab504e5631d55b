"""Per-layer INT8 sensitivity finds a planted fragile layer; mixed precision keeping it in float recovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.data.digits import demo_data, train_classifier
from kd_edge.export import export_onnx, onnx_session, run_onnx
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
    for k, keep in ((0, "fp32"), (1, "fp32"), (1, "fp16")):
        result = mixed_precision(path, report, k, tmp_path / f"k{k}{keep}.onnx", data.calib_x, keep=keep)
        out = run_onnx(onnx_session(result.path), data.test_x)
        scores[(k, keep)] = (sqnr_db(reference, out), float((out.argmax(1) == data.test_y.numpy()).mean()))
        assert len(result.quantized_layers) == 3 - k and result.excluded == report.ranking[:k]
    fp32_accuracy = report.fp32_metric
    all_int8_sqnr, all_int8_accuracy = scores[(0, "fp32")]
    assert all_int8_accuracy < fp32_accuracy - 0.02
    for keep in ("fp32", "fp16"):
        sqnr, acc = scores[(1, keep)]
        assert sqnr > all_int8_sqnr + 10
        assert fp32_accuracy - acc <= 0.5 * (fp32_accuracy - all_int8_accuracy)  # recovers >= half the loss


def test_fp16_kept_layer_really_runs_in_fp16(planted, tmp_path: Path) -> None:
    path, data = planted
    result = mixed_precision(path, ["node_linear_2"], 1, tmp_path / "m.onnx", data.calib_x, keep="fp16")
    graph = onnx.load(result.path).graph
    kept = next(n for n in graph.node if n.name == "node_linear_2")
    weights = {i.name: i for i in graph.initializer}
    assert weights[kept.input[1]].data_type == onnx.TensorProto.FLOAT16
    assert result.op_counts["Cast"] == 2


def test_bad_arguments(planted, tmp_path: Path) -> None:
    path, data = planted
    with pytest.raises(ConfigError, match="k") as info:
        mixed_precision(path, ["node_linear"], 2, tmp_path / "m.onnx", data.calib_x)
    assert info.value.argument == "k"
    with pytest.raises(ConfigError, match="layers"):
        layer_sensitivity(path, data.calib_x, data.test_x, layers=["nope"])
    with pytest.raises(ConfigError, match="calibration"):
        layer_sensitivity(path, [], data.test_x)
    with pytest.raises(ConfigError, match="model_path"):
        layer_sensitivity(tmp_path / "missing.onnx", data.calib_x, data.test_x)
