"""Dynamic / static INT8 and FP16 through ONNX Runtime: what gets quantized, sizes, accuracy, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.export import export_onnx, onnx_session, run_onnx
from kd_edge.models.small import SmallMLP, build_model
from kd_edge.quantize import (
    CalibrationReader,
    compute_layers,
    convert_fp16,
    gemm_to_matmul,
    quantize_dynamic_int8,
    quantize_static_int8,
)


def _inputs(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def big_mlp(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An MLP whose weights dominate the file (~1.3 MB in FP32)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("q") / "mlp.onnx"
    return export_onnx(SmallMLP(hidden=(512, 512)), _inputs(2), path).path


def test_static_int8_quarters_the_file_and_keeps_outputs(big_mlp: str, tmp_path: Path) -> None:
    result = quantize_static_int8(big_mlp, tmp_path / "int8.onnx", _inputs())
    assert result.size_bytes < 0.3 * result.source_size_bytes
    assert Path(result.path).stat().st_size == result.size_bytes
    assert len(result.quantized_layers) == 3  # every Linear (Gemm) takes INT8 weights
    x = _inputs(32)
    ref, out = run_onnx(onnx_session(big_mlp), x), run_onnx(onnx_session(result.path), x)
    assert np.abs(ref - out).max() < 0.05 * np.abs(ref).max()


def test_static_int8_quantizes_convolutions_and_linear(tmp_path: Path) -> None:
    path = export_onnx(build_model("cnn"), _inputs(2), tmp_path / "cnn.onnx").path
    result = quantize_static_int8(path, tmp_path / "cnn8.onnx", _inputs())
    ops = {layer["node"]: layer["op_type"] for layer in compute_layers(path)}
    assert sorted(ops.values()) == ["Conv", "Conv", "Conv", "Gemm"]
    assert sorted(result.quantized_layers) == sorted(ops)


def test_dynamic_int8_rewrites_gemm_so_linear_layers_are_quantized(big_mlp: str, tmp_path: Path) -> None:
    result = quantize_dynamic_int8(big_mlp, tmp_path / "dyn.onnx")
    assert result.op_counts.get("MatMulInteger") == 3 and "Gemm" not in result.op_counts
    assert result.size_bytes < 0.3 * result.source_size_bytes
    x = _inputs(16)
    ref, out = run_onnx(onnx_session(big_mlp), x), run_onnx(onnx_session(result.path), x)
    assert np.abs(ref - out).max() < 0.05 * np.abs(ref).max()


def test_gemm_to_matmul_is_the_same_function(big_mlp: str, tmp_path: Path) -> None:
    rewritten = tmp_path / "matmul.onnx"
    onnx.save(gemm_to_matmul(onnx.load(big_mlp)), str(rewritten))
    x = _inputs(8)
    np.testing.assert_allclose(run_onnx(onnx_session(rewritten), x), run_onnx(onnx_session(big_mlp), x), atol=1e-5)


def test_fp16_halves_the_file_and_keeps_float32_io(big_mlp: str, tmp_path: Path) -> None:
    result = convert_fp16(big_mlp, tmp_path / "fp16.onnx")
    assert 0.45 < result.size_ratio < 0.55
    out = run_onnx(onnx_session(result.path), _inputs(8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, run_onnx(onnx_session(big_mlp), _inputs(8)), atol=1e-2)


def test_calibration_reader_accepts_tensors_pairs_and_dicts() -> None:
    x = _inputs(10)
    for data in (x, [(x[:4], None), (x[4:], None)], [{"input": x[i]} for i in range(10)]):
        reader = CalibrationReader(data if not isinstance(data, list) or isinstance(data[0], tuple)
                                   else _ListDataset(data), batch_size=4)
        assert reader.samples == 10 and [len(b["input"]) for b in iter(reader.get_next, None)] == [4, 4, 2]


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_empty_calibration_is_refused_before_work(big_mlp: str, tmp_path: Path) -> None:
    for empty in ([], torch.zeros(0, 1, 8, 8), None):
        with pytest.raises(ConfigError, match="calibration") as info:
            quantize_static_int8(big_mlp, tmp_path / "x.onnx", empty)
        assert info.value.argument == "calibration"
    assert not (tmp_path / "x.onnx").exists()


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path") as info:
        quantize_dynamic_int8(tmp_path / "nope.onnx", tmp_path / "out.onnx")
    assert "nope.onnx" in str(info.value)
    with pytest.raises(ConfigError, match="nodes_to_exclude"):
        quantize_static_int8(_export_tiny(tmp_path), tmp_path / "o.onnx", _inputs(), nodes_to_exclude=["no_such"])


def _export_tiny(tmp_path: Path) -> str:
    return export_onnx(build_model("mlp"), _inputs(2), tmp_path / "tiny.onnx").path
