"""The latency harness: every candidate at every batch size and thread count, percentiles in order, sizes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.export import export_onnx
from kd_edge.latency import benchmark, percentile, rows_to_json
from kd_edge.models.small import build_model
from torch import nn


class Sleepy(nn.Module):
    """Takes a known time per call: 2 ms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)
        return x


def test_percentile_by_hand() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 90) == 9.0


def test_benchmark_side_by_side(tmp_path: Path) -> None:
    model = build_model("mlp")
    path = export_onnx(model, torch.zeros(2, 1, 8, 8), tmp_path / "m.onnx").path
    rows = benchmark({"pytorch": model, "ort": path, "sleepy": Sleepy()}, (1, 8, 8), batch_sizes=[1, 4],
                     threads=[1], warmup=2, iterations=8)
    assert [(r.name, r.batch_size) for r in rows] == [(n, b) for b in (1, 4) for n in ("pytorch", "ort", "sleepy")]
    for row in rows:
        assert 0 < row.p50_ms <= row.p90_ms <= row.p99_ms and row.iterations == 8 and row.threads == 1
        assert row.samples_per_s == pytest.approx(row.batch_size / row.p50_ms * 1000)
    sleepy = [r for r in rows if r.name == "sleepy"]
    assert all(2.0 <= r.p50_ms < 20.0 for r in sleepy)
    ort_row = next(r for r in rows if r.name == "ort")
    assert ort_row.runtime == "onnxruntime" and ort_row.size_bytes == Path(path).stat().st_size
    assert next(r for r in rows if r.name == "pytorch").size_bytes > 4 * sum(p.numel() for p in model.parameters())
    assert rows_to_json(rows)[0]["name"] == "pytorch"
    assert torch.get_num_threads() >= 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="candidates"):
        benchmark({"x": tmp_path / "missing.onnx"}, (4,))
    with pytest.raises(ConfigError, match="batch_sizes"):
        benchmark({"s": Sleepy()}, (4,), batch_sizes=[0])
    with pytest.raises(ConfigError, match="threads"):
        benchmark({"s": Sleepy()}, (4,), threads=[])
