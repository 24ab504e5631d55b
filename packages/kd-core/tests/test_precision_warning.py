"""``--precision bf16``/``fp16`` on a device without fast support warns: the flag, what is expected, what is there."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from kd_core import backends
from kd_core.backends import Backend, PrecisionWarning, read_cpu_flags, slow_precision

CPU = torch.device("cpu")
PLAIN_X86 = frozenset({"fpu", "sse2", "avx2", "avx512f"})


def test_bf16_on_an_x86_cpu_without_native_bf16_warns() -> None:
    message = slow_precision(CPU, "bf16", cpu_flags=lambda: PLAIN_X86, machine="x86_64")
    assert message is not None and "\n" not in message
    assert message.startswith("--precision bf16: expected")
    assert "avx512_bf16" in message and "amx_bf16" in message and "received an x86_64 CPU without it" in message


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_bf16_on_an_x86_cpu_with_native_bf16_is_quiet(flag: str) -> None:
    assert slow_precision(CPU, "bf16", cpu_flags=lambda: PLAIN_X86 | {flag}, machine="x86_64") is None


def test_bf16_on_arm_needs_the_bf16_feature() -> None:
    assert slow_precision(CPU, "bf16", cpu_flags=lambda: frozenset({"fp", "asimd"}), machine="aarch64") is not None
    assert slow_precision(CPU, "bf16", cpu_flags=lambda: frozenset({"asimd", "bf16"}), machine="aarch64") is None


def test_unknown_cpu_flags_and_fp32_never_warn() -> None:
    assert slow_precision(CPU, "bf16", cpu_flags=lambda: None, machine="x86_64") is None
    assert slow_precision(CPU, "fp32", cpu_flags=lambda: PLAIN_X86, machine="x86_64") is None


def test_fp16_on_a_cpu_always_warns() -> None:
    message = slow_precision(CPU, "fp16", cpu_flags=lambda: PLAIN_X86 | {"avx512_fp16", "amx_bf16"}, machine="x86_64")
    assert message is not None and message.startswith("--precision fp16: expected") and "received a CPU" in message


def test_cuda_bf16_needs_compute_capability_8() -> None:
    gpu = torch.device("cuda", 0)
    message = slow_precision(gpu, "bf16", cuda_capability=(7, 5))
    assert message is not None and ">= 8.0" in message and "capability 7.5" in message and "--precision bf16" in message
    assert slow_precision(gpu, "bf16", cuda_capability=(8, 0)) is None
    assert slow_precision(gpu, "fp16", cuda_capability=(7, 5)) is None
    assert slow_precision(gpu, "fp16", cuda_capability=(6, 1)) is not None


def test_backend_warns_once_built_on_a_cpu_without_bf16(monkeypatch) -> None:
    monkeypatch.setattr(backends.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(backends, "read_cpu_flags", lambda: PLAIN_X86)
    with pytest.warns(PrecisionWarning, match=r"--precision bf16: expected a CPU with native bf16"):
        Backend("cpu", "bf16", distributed="none")
    monkeypatch.setattr(backends, "read_cpu_flags", lambda: PLAIN_X86 | {"amx_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        Backend("cpu", "bf16", distributed="none")
        Backend("cpu", "fp32", distributed="none")


def test_read_cpu_flags_reads_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert read_cpu_flags(x86) == frozenset({"fpu", "sse2", "avx512_bf16"})
    assert read_cpu_flags(arm) == frozenset({"fp", "asimd", "bf16"})
    assert read_cpu_flags(tmp_path / "missing") is None


def test_the_cli_prints_a_kd_warning_as_one_line(monkeypatch, capsys) -> None:
    from kd_core.cli import one_line_warnings

    monkeypatch.setattr(backends.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(backends, "read_cpu_flags", lambda: PLAIN_X86)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with one_line_warnings():
            backends.Backend("cpu", "bf16", distributed="none")
            warnings.warn_explicit("cache rebuilt", RuntimeWarning, "/site-packages/kd_vision/data/digits.py", 9)
            with pytest.warns(UserWarning, match="not ours"):  # other warnings: the previous handler
                warnings.warn_explicit("not ours", UserWarning, "/elsewhere/lib.py", 3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[1] == "warning: cache rebuilt", lines
    assert lines[0].startswith("warning: --precision bf16: expected a CPU with native bf16"), lines
