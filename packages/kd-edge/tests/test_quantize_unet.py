"""U-Net generators are first-class for quantization: a pix2pix U-Net (strided Conv down, ConvTranspose up,
concatenation skips; the ``make_unet`` fixture) exports with parity and static-INT8 quantizes every Conv *and*
ConvTranspose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kd_edge.data.digits import demo_data
from kd_edge.export import export_onnx, onnx_session, parity, run_onnx
from kd_edge.quantize import quantize_static_int8
from kd_edge.sensitivity import sqnr_db
from onnx import TensorProto


@pytest.fixture(scope="module")
def unet(tmp_path_factory: pytest.TempPathFactory, make_unet):
    """A 3-level U-Net on real 8x8 digits (image to image), exported, and its static INT8 model."""
    data = demo_data(calibration_size=64, test_size=100)
    model = make_unet(depth=3, base=8, seed=0)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained generator has
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("unet")
    exported = export_onnx(model, data.test_x[:2], folder / "unet.onnx")
    quantized = quantize_static_int8(exported.path, folder / "unet.int8.onnx", data.calib_x)
    return model, data, exported, quantized


def _int8_weight(model: onnx.ModelProto, node: onnx.NodeProto, scheme: str = "u8s8") -> bool:
    """Whether the node's weight input is DequantizeLinear of an 8-bit initializer of the scheme's weight type
    (int8 for U8S8, uint8 for U8U8)."""
    producers = {out: n for n in model.graph.node for out in n.output}
    initializers = {init.name: init for init in model.graph.initializer}
    weight = producers.get(node.input[1])
    if weight is None or weight.op_type != "DequantizeLinear":
        return False
    source = initializers.get(weight.input[0])
    expected = TensorProto.UINT8 if scheme == "u8u8" else TensorProto.INT8
    return source is not None and source.data_type == expected


def test_unet_exports_with_parity(unet, tmp_path: Path) -> None:
    model, data, exported, _ = unet
    assert exported.exporter == "dynamo"
    ops = {n.op_type for n in onnx.load(exported.path).graph.node}
    assert {"Conv", "ConvTranspose", "Concat"} <= ops
    result = parity(model, exported.path, data.test_x, atol=1e-4, save_to=tmp_path / "parity.json")
    assert result.passed and result.max_abs_error <= 1e-4
    assert (tmp_path / "parity.json").is_file()


def test_static_int8_quantizes_every_conv_and_conv_transpose(unet) -> None:
    quantized = unet[3]
    graph = onnx.load(quantized.path)
    layers = [n for n in graph.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    counts = {op: sum(n.op_type == op for n in layers) for op in ("Conv", "ConvTranspose")}
    assert counts == {"Conv": 3, "ConvTranspose": 3}  # depth 3: one of each per level
    scheme = quantized.scheme
    assert all(_int8_weight(graph, n, scheme) for n in layers), [n.name for n in layers
                                                                 if not _int8_weight(graph, n, scheme)]
    assert sorted(quantized.quantized_layers) == sorted(n.name for n in layers)
    assert quantized.size_ratio < 0.5  # 8-bit weights (the file also holds scales and graph overhead)


def test_int8_unet_output_close_to_fp32(unet) -> None:
    _, data, exported, quantized = unet
    reference = run_onnx(onnx_session(exported.path), data.test_x)
    int8 = run_onnx(onnx_session(quantized.path), data.test_x)
    assert reference.shape == int8.shape == tuple(data.test_x.shape)
    sqnr = sqnr_db(reference, int8)
    assert 25.0 < sqnr < 300.0  # close (noise power < 0.3% of the signal), and really quantized (not identical)
    noisy = reference + np.random.default_rng(0).normal(0, np.sqrt(np.mean(reference ** 2)), reference.shape)
    assert sqnr_db(reference, noisy) < 1.0  # the same measure flags a 0 dB-noise output


def test_kernel_ops_leave_conv_transpose_in_fp32_and_mixed_precision_follows(unet, tmp_path: Path) -> None:
    from kd_edge.quantize import INT8_KERNEL_OPS, INT8_OPS, compute_precisions
    from kd_edge.sensitivity import mixed_precision

    _, data, exported, _ = unet
    assert INT8_OPS["kernels"] == INT8_KERNEL_OPS and "ConvTranspose" not in INT8_KERNEL_OPS
    made = quantize_static_int8(exported.path, tmp_path / "kernels.onnx", data.calib_x, op_types=INT8_KERNEL_OPS)
    graph = onnx.load(made.path)
    by_name = {n.name: n for n in graph.graph.node}
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    transposed = [n for n in graph.graph.node if n.op_type == "ConvTranspose"]
    assert sorted(made.quantized_layers) == sorted(n.name for n in convs)
    assert not any(_int8_weight(graph, n, made.scheme) for n in transposed)
    # ORT runs the three Convs as integer kernels and the three ConvTransposes in float
    ran = compute_precisions(made.path, data.test_x[:2])
    assert ran.get("uint8", 0) + ran.get("int8", 0) == 3 and ran.get("float", 0) == 3, ran
    # mixed precision on the same ops: the kept Conv stays float, ConvTranspose is never quantized
    kept = convs[0].name
    mixed = mixed_precision(exported.path, [kept], 1, tmp_path / "mixed.onnx", data.calib_x, keep="fp32",
                            op_types=INT8_KERNEL_OPS)
    assert sorted(mixed.quantized_layers) == sorted(n.name for n in convs[1:]) and kept in by_name
