"""kd-generative's Pix2Pix U-Net generator through kd-edge's selective FP16/INT8 precision (Kim et al.,
arXiv:2304.00471), wired only here: the generator is exported to ONNX by kd-edge, ranked by per-layer INT8
sensitivity, and run in ONNX Runtime as FP32, all-INT8 and mixed (the most sensitive layers kept in FP16, the
default, or FP32). The compact talking-face generator takes two inputs (frames and a mel window) and kd-edge's
sensitivity tools feed one, so the U-Net is the generator used here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kd_edge.export import export_onnx, onnx_session, parity, run_onnx
from kd_edge.quantize import compute_precisions, quantize_static_int8
from kd_edge.sensitivity import SensitivityReport, layer_sensitivity, mixed_precision, sqnr_db
from kd_generative.models.unet import build_unet

LAYERS = 8  # depth 4: one Conv and one ConvTranspose per level


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth grey images in [-1, 1] (random 8x8 fields upsampled), as a photo's grey channel is."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A compact grey -> colour U-Net (depth 4, base 8) with trained-looking BatchNorm statistics, exported, its
    calibration and evaluation images, the FP32 outputs and the sensitivity ranking."""
    torch.manual_seed(0)
    model = build_unet(in_channels=1, out_channels=3, depth=4, base=8).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("gen-precision")
    calib, inputs = _images(32, seed=1), _images(16, seed=2)
    exported = export_onnx(model, inputs[:2], folder / "generator.onnx", output_names=("image",))
    report = layer_sensitivity(exported.path, calib, inputs)
    return {"model": model, "path": exported.path, "exporter": exported.exporter, "calib": calib, "inputs": inputs,
            "reference": run_onnx(onnx_session(exported.path), inputs), "report": report, "folder": folder}


def _run(path: str, inputs: torch.Tensor) -> np.ndarray:
    return run_onnx(onnx_session(path), inputs)


def test_generator_exports_with_parity_and_every_layer_is_ranked(generator) -> None:
    assert generator["exporter"] == "dynamo"
    assert parity(generator["model"], generator["path"], generator["inputs"], atol=1e-4).passed
    report: SensitivityReport = generator["report"]
    assert len(report.layers) == LAYERS and [r.rank for r in report.layers] == list(range(1, LAYERS + 1))
    assert {r.op_type for r in report.layers} == {"Conv", "ConvTranspose"}
    sqnrs = [r.sqnr_db for r in report.layers]
    assert sqnrs == sorted(sqnrs)  # most sensitive (lowest SQNR when quantized alone) first
    assert report.all_int8_sqnr_db <= sqnrs[0] + 1.0  # all layers at once hurt at least as much as the worst one


def test_selective_fp16_int8_against_all_int8(generator, tmp_path: Path) -> None:
    path, calib, inputs, reference = (generator[k] for k in ("path", "calib", "inputs", "reference"))
    report: SensitivityReport = generator["report"]
    all_int8 = quantize_static_int8(path, tmp_path / "int8.onnx", calib)
    int8_out = _run(all_int8.path, inputs)
    int8_sqnr = sqnr_db(reference, int8_out)
    assert 15.0 < int8_sqnr < 60.0  # close to FP32, and really quantized

    k0 = mixed_precision(path, report, 0, tmp_path / "k0.onnx", calib)
    assert k0.mode == "static-int8" and not k0.excluded
    np.testing.assert_array_equal(_run(k0.path, inputs), int8_out)  # k = 0 is all-INT8

    mixed = mixed_precision(path, report, 2, tmp_path / "k2.onnx", calib)  # default keep: FP16
    assert mixed.mode == "mixed-int8-fp16" and mixed.excluded == report.ranking[:2]
    assert sorted(mixed.quantized_layers) == sorted(report.ranking[2:])
    graph = onnx.load(mixed.path).graph
    weights = {init.name: init for init in graph.initializer}
    for node in (n for n in graph.node if n.name in mixed.excluded):
        assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT16
    out = _run(mixed.path, inputs)
    assert out.shape == reference.shape == (16, 3, 32, 32)
    # keeping the two most sensitive layers recovers quality; keeping the two least sensitive ones recovers less
    least = mixed_precision(path, report.ranking[::-1], 2, tmp_path / "least.onnx", calib)
    assert sqnr_db(reference, out) > max(int8_sqnr, sqnr_db(reference, _run(least.path, inputs))) + 3.0

    # every layer kept in FP16: only FP16 weight rounding is left, so the output is FP32's to ~1e-3
    everything = mixed_precision(path, report, LAYERS, tmp_path / "fp16.onnx", calib)
    full = _run(everything.path, inputs)
    assert not everything.quantized_layers and sqnr_db(reference, full) > 45.0
    assert np.abs(full - reference).max() < 5e-3
    # ORT ran every compute layer of that model in floating point (FP16 kernels, or FP32 where the CPU has none)
    counts = compute_precisions(everything.path, inputs[:1])
    assert sum(counts.values()) == LAYERS and set(counts) <= {"float16", "float"}


def test_keep_fp32_matches_the_fp16_model_up_to_weight_rounding(generator, tmp_path: Path) -> None:
    path, calib, inputs, reference = (generator[k] for k in ("path", "calib", "inputs", "reference"))
    report: SensitivityReport = generator["report"]
    half = mixed_precision(path, report, LAYERS, tmp_path / "h.onnx", calib)
    full = mixed_precision(path, report, LAYERS, tmp_path / "f.onnx", calib, keep="fp32")
    assert full.mode == "mixed-int8-fp32" and "Cast" not in full.op_counts
    np.testing.assert_allclose(_run(full.path, inputs), reference, atol=1e-5, rtol=0)  # nothing quantized
    assert np.abs(_run(half.path, inputs) - reference).max() > 0  # FP16 weights really rounded
