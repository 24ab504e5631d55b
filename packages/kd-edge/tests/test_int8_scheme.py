"""The INT8 scheme choice: U8U8 on x86-64 without VNNI (ORT's U8S8 kernels saturate there), U8S8 elsewhere,
and the check against FP32 that falls back to U8U8; each path forced, so that both CPU kinds are covered
whichever CPU runs the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge import int8_scheme
from kd_edge.export import export_onnx
from kd_edge.int8_scheme import SCHEMES, choose_scheme, cpu_flags, resolve_scheme
from kd_edge.models.small import SmallMLP
from kd_edge.quantize import quantize_dynamic_int8, quantize_static_int8, relative_error
from onnxruntime.quantization import QuantType

AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"}


def test_vnni_cpus_get_u8s8_and_others_u8u8() -> None:
    assert choose_scheme(AVX2_ONLY, "x86_64").name == "u8u8"
    assert "without VNNI" in choose_scheme(AVX2_ONLY, "x86_64").reason
    for flag in ("avx512_vnni", "avx_vnni"):
        chosen = choose_scheme(AVX2_ONLY | {flag}, "x86_64")
        assert chosen.name == "u8s8" and flag in chosen.reason
    assert choose_scheme(set(), "aarch64").name == "u8s8"
    unknown = choose_scheme(None, "x86_64", read_flags=False)
    assert unknown.name == "u8s8" and "validated" in unknown.reason


def test_scheme_types() -> None:
    assert SCHEMES["u8u8"].weight_type == QuantType.QUInt8 and SCHEMES["u8s8"].weight_type == QuantType.QInt8
    assert SCHEMES["u8s8-reduced"].reduce_range and not SCHEMES["u8s8"].reduce_range
    assert all(s.activation_type == QuantType.QUInt8 for s in SCHEMES.values())


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") is None


def test_resolve_scheme_forces_a_name_and_refuses_others() -> None:
    assert resolve_scheme("u8u8").name == "u8u8" and resolve_scheme("u8u8").reason == "forced"
    with pytest.raises(ConfigError, match="scheme") as info:
        resolve_scheme("s8s8")
    assert info.value.argument == "scheme"


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 512-wide MLP: wide enough that saturating U8S8 kernels show (about 19 % error on AVX2 without VNNI)."""
    torch.manual_seed(0)
    return export_onnx(SmallMLP(hidden=(512, 512)), _inputs(2), tmp_path_factory.mktemp("s") / "mlp.onnx").path


def _inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("quantize", ["static", "dynamic"])
def test_forced_u8u8_is_accurate_on_any_cpu(mlp: str, tmp_path: Path, quantize: str) -> None:
    x = _inputs(64)
    if quantize == "static":
        result = quantize_static_int8(mlp, tmp_path / "q.onnx", x, scheme="u8u8")
    else:
        result = quantize_dynamic_int8(mlp, tmp_path / "q.onnx", scheme="u8u8", validation=x)
    assert result.scheme == "u8u8" and result.scheme_reason == "forced"
    assert result.relative_error is not None and result.relative_error < 0.05
    assert result.schemes_tried == {"u8u8": result.relative_error}


def test_auto_on_a_vnni_cpu_checks_u8s8_and_keeps_the_better(mlp: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU is made to look like a VNNI one, and a zero tolerance forces the fallback: on a real VNNI CPU
    U8S8 may stay; on one without VNNI, U8S8 saturates and U8U8 replaces it. Either way the kept model is the
    better of the two and accurate."""
    monkeypatch.setattr(int8_scheme, "cpu_flags", lambda *_: frozenset(AVX2_ONLY | {"avx512_vnni"}))
    monkeypatch.setattr(int8_scheme.platform, "machine", lambda: "x86_64")
    x = _inputs(64)
    result = quantize_static_int8(mlp, tmp_path / "q.onnx", x, tolerance=0.0)
    assert set(result.schemes_tried) == {"u8s8", "u8u8"}
    assert result.scheme == min(result.schemes_tried, key=result.schemes_tried.get)
    assert result.relative_error == pytest.approx(relative_error(mlp, result.path, x.numpy()))
    assert result.relative_error < 0.05


def test_auto_keeps_u8s8_within_tolerance(mlp: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int8_scheme, "cpu_flags", lambda *_: frozenset({"avx512_vnni"}))
    monkeypatch.setattr(int8_scheme.platform, "machine", lambda: "x86_64")
    result = quantize_static_int8(mlp, tmp_path / "q.onnx", _inputs(64), tolerance=1.0)
    assert result.scheme == "u8s8" and list(result.schemes_tried) == ["u8s8"]


def test_auto_is_accurate_on_this_cpu(mlp: str, tmp_path: Path) -> None:
    x = _inputs(64)
    result = quantize_static_int8(mlp, tmp_path / "q.onnx", x)
    assert result.relative_error is not None and result.relative_error < 0.05
    assert result.scheme in SCHEMES and result.scheme_reason


def test_tolerance_must_be_a_non_negative_number(mlp: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        quantize_dynamic_int8(mlp, tmp_path / "q.onnx", validation=_inputs(4), tolerance=-1)
