"""kd_core.plots: every figure is a valid PNG, written atomically, with its figure closed."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from kd_core import plots
from kd_core.errors import ConfigError
from kd_core.metrics import expected_calibration_error
from kd_core.plots import (
    plot_bars,
    plot_epoch_curves,
    plot_loss_curves,
    plot_reliability_diagram,
    reliability_bin_counts,
)
from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_single_png(folder: Path, path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(folder.iterdir()) == [path]  # no temp file left beside it
    assert plt.get_fignums() == []  # the figure was closed


def _calibration(seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(40, 3, generator=generator) * 2
    labels = torch.randint(0, 3, (40,), generator=generator)
    return expected_calibration_error(logits, labels, n_bins=10)


def test_reliability_diagram(tmp_path: Path) -> None:
    target = tmp_path / "reliability.png"
    returned = plot_reliability_diagram({"teacher": _calibration(0), "student": _calibration(1)}, target)
    assert returned == target
    _assert_single_png(tmp_path, target)
    with pytest.raises(ConfigError, match="results"):
        plot_reliability_diagram({}, tmp_path / "empty.png")
    with pytest.raises(ConfigError, match="results"):
        plot_reliability_diagram({"m": 0.1}, tmp_path / "bad.png")  # type: ignore[dict-item]


def test_loss_curves_with_runs_and_missing_keys(tmp_path: Path) -> None:
    records = [
        {"run": "hinton", "step": 0, "loss/total": 2.0, "loss/kd": 1.5},
        {"run": "hinton", "step": 10, "loss/total": 1.2},  # no loss/kd here: skipped for that line
        {"run": "dkd", "step": 0, "loss/total": 2.1, "loss/kd": 1.4},
        {"run": "dkd", "step": 10, "loss/total": 1.0, "loss/kd": 0.8, "val/accuracy": 0.5},
        {"epoch": 1, "val/accuracy": 0.6},  # no step: skipped
    ]
    target = tmp_path / "plots" / "loss.png"  # the folder is created
    assert plot_loss_curves(records, target) == target
    _assert_single_png(tmp_path / "plots", target)


def test_loss_curves_selected_keys_and_other_x(tmp_path: Path) -> None:
    records = [{"epoch": e, "loss/total": 1.0 / (e + 1), "val/nll": 0.5} for e in range(4)]
    target = tmp_path / "val.png"
    plot_loss_curves(records, target, keys=["val/nll"], x="epoch")
    _assert_single_png(tmp_path, target)


def test_loss_curves_without_anything_to_draw(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="records"):
        plot_loss_curves([{"step": 0, "val/accuracy": 0.5}], tmp_path / "none.png")
    with pytest.raises(ConfigError, match="records"):
        plot_loss_curves([{"loss/total": 1.0}], tmp_path / "none.png")  # no step at all
    assert list(tmp_path.iterdir()) == []


def test_bars_and_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "accuracy.png"
    target.write_bytes(b"old")
    plot_bars({"teacher": 0.93, "student": 0.88, "student+kd": 0.91}, target, "CIFAR-10", "accuracy")
    _assert_single_png(tmp_path, target)
    with pytest.raises(ConfigError, match="values"):
        plot_bars({}, tmp_path / "empty.png", "t", "y")
    with pytest.raises(ConfigError, match="values"):
        plot_bars({"a": float("nan")}, tmp_path / "nan.png", "t", "y")


def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    target = tmp_path / "bars.png"
    target.write_bytes(PNG_MAGIC + b"previous")
    with pytest.raises(OSError, match="disk full"):
        plot_bars({"a": 1.0}, target, "t", "y")
    assert target.read_bytes() == PNG_MAGIC + b"previous"  # the old file is untouched
    assert sorted(tmp_path.iterdir()) == [target]
    assert plt.get_fignums() == []


def _confident(*confidences: float) -> torch.Tensor:
    """Two-class logits whose softmax confidence is exactly each of ``confidences`` (class 0 predicted)."""
    p = torch.tensor(confidences, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_reliability_bin_counts_by_hand() -> None:
    # confidences 0.95, 0.92, 0.55, 0.58, 0.53 over 10 bins: two in (0.9, 1], three in (0.5, 0.6]
    result = expected_calibration_error(_confident(0.95, 0.92, 0.55, 0.58, 0.53), torch.tensor([0, 1, 0, 0, 1]),
                                        n_bins=10)
    counts = reliability_bin_counts(result)
    assert [count for _, _, count in counts] == [0, 0, 0, 0, 0, 3, 0, 0, 0, 2]
    assert counts[5][:2] == pytest.approx((0.5, 0.6)) and counts[9][:2] == pytest.approx((0.9, 1.0))
    with pytest.raises(ConfigError, match="result"):
        reliability_bin_counts(0.1)  # type: ignore[arg-type]


def test_reliability_diagram_prints_each_bins_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[str]] = []
    original = plots.save_figure

    def spy(fig: Figure, path: Path, **kwargs: object) -> Path:
        drawn.append([t.get_text() for ax in fig.axes for t in ax.texts])
        return original(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", spy)
    # 1,200 samples at confidence 0.95 (the thousands separator shows) and 3 at 0.55
    logits = _confident(*([0.95] * 1200 + [0.55] * 3))
    labels = torch.zeros(1203, dtype=torch.long)
    target = tmp_path / "reliability.png"
    plot_reliability_diagram({"student": expected_calibration_error(logits, labels, n_bins=10),
                              "teacher": _calibration(0)}, target)
    _assert_single_png(tmp_path, target)
    teacher_counts = [f"{count:,}" for _, _, count in reliability_bin_counts(_calibration(0)) if count]
    assert drawn == [["3", "1,200", *teacher_counts]]  # a count per non-empty bin, none for empty ones
    assert sum(int(c) for c in teacher_counts) == 40


def test_epoch_curves(tmp_path: Path) -> None:
    target = tmp_path / "training.png"
    panels = {"validation accuracy (%)": {"student": [(1, 50.0), (2, 60.0)], "teacher": [(1, 80.0), (2, 81.0)]},
              "train loss/kd (epoch mean)": {"loss/kd": [(1, 2.0), (2, float("nan"))]},
              "empty": {"loss/x": [(1, float("inf"))]}}
    assert plot_epoch_curves(panels, target, marks=[(0.0, "warm T=4"), (1.0, "cool T=1")]) == target
    _assert_single_png(tmp_path, target)
    with pytest.raises(ConfigError, match="panels"):
        plot_epoch_curves({}, tmp_path / "none.png")
    with pytest.raises(ConfigError, match="panels"):
        plot_epoch_curves({"a": [(1, 2)]}, tmp_path / "none.png")  # type: ignore[dict-item]
