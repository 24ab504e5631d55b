"""``tools/bench/vs_torchdistill.py`` at toy size: the four timed sides, the A/A control and the rendered section."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))

pytest.importorskip("torchdistill")

import regenerate  # tools/bench, put on the path just above
import vs_torchdistill


def test_a_toy_run_times_four_sides_and_reports_the_control(tmp_path, capsys):
    out = tmp_path / "vs.json"
    result = vs_torchdistill.main(["--teacher", "16,32,4", "--student", "16,8,4", "--steps-per-epoch", "4",
                                   "--batch-size", "8", "--rounds", "4", "--epochs", "1", "--seeds", "2",
                                   "--teacher-epochs", "1", "--threads", "1", "--json", str(out)])
    assert out.is_file()
    assert set(result["step"]) == {"kd", "torchdistill", "hand", "hand-copy"}
    assert all(s["steps"] == 4 * 3 for s in result["step"].values())  # 4 rounds × (4 steps − the first)
    control = result["step"]["hand-copy"]["median_ms"] / result["step"]["hand"]["median_ms"]
    assert result["ratio_control_hand"] == pytest.approx(control)
    assert set(result["peak_memory_mib"]) == {"kd", "torchdistill", "hand"}  # the control is timed only
    assert result["warmup_max_relative_loss_difference"] < 1e-3 and result["accuracy"]["agree"]
    assert all("hand-copy/hand" in r for r in result["per_round"])
    assert "A/A control: hand-copy/hand" in capsys.readouterr().out
    lines = regenerate.render_vs_torchdistill(result)
    assert any(line.startswith("- A/A control") and f"{result['ratio_control_hand']:.3f}" in line for line in lines)
