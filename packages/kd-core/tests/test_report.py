"""kd_core.report: a fit's report (phases, best and final validation rows, checkpoints) and its curves."""

from __future__ import annotations

from pathlib import Path

import pytest
from kd_core import Objective, Term, cross_entropy, kl_divergence
from kd_core.report import FitPhase, best_epoch, describe_objective, fit_curves, write_fit_report
from kd_core.runs import RunDir
from kd_core.schedules import Linear


def test_describe_objective_names_weights_and_temperatures() -> None:
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.9, temperature=4.0),
                          Term("ce", cross_entropy, target="label", weight=0.1))
    assert describe_objective(objective) == ("kd (w=0.9, T=4) + ce (w=0.1)", "4")
    annealed = Objective(Term("kd", kl_divergence, teacher="logits", temperature=Linear(8.0, 1.0)))
    assert describe_objective(annealed) == ("kd (w=1, T=8→1)", "8→1")
    assert describe_objective(Objective(Term("ce", cross_entropy, target="label"))) == ("ce (w=1)", "")


def test_best_epoch_is_the_first_best_finite_row() -> None:
    rows = [{"epoch": 1, "m": 0.5}, {"epoch": 2, "m": float("nan")}, {"epoch": 3, "m": 0.7}, {"epoch": 4, "m": 0.7}]
    assert best_epoch(rows, "m")["epoch"] == 3  # ties keep the first, as the engine's best checkpoint does
    assert best_epoch(rows, "m", mode="min")["epoch"] == 1
    assert best_epoch([{"epoch": 1}], "m") is None


PHASES = [FitPhase("warm", 2, "kd (w=1, T=4)", "4"), FitPhase("cool", 1, "ce (w=1)", "")]
HISTORY = [
    {"phase": 0, "epoch": 1, "val/accuracy": 0.5, "val/nll": 1.25, "val_teacher/accuracy": 0.9},
    {"phase": 0, "epoch": 2, "val/accuracy": 0.25, "val/nll": 1.5, "val_teacher/accuracy": 0.95},
    {"phase": 1, "epoch": 1, "val/accuracy": 0.75, "val/nll": 1.0, "val_teacher/accuracy": 0.95},
]
# two steps per epoch: epoch = e + (batch + 1) / 2
RECORDS = [
    {"step": 1, "phase": 0, "epoch": 0.5, "loss/total": 4.0, "loss/kd": 4.0},
    {"step": 2, "phase": 0, "epoch": 1.0, "loss/total": 2.0, "loss/kd": 2.0},
    {"step": 2, "phase": 0, "epoch": 1, "phase_name": "warm", "val/accuracy": 0.5},  # an epoch line: no losses
    {"step": 3, "phase": 0, "epoch": 1.5, "loss/total": 1.0, "loss/kd": 1.0},
    {"step": 4, "phase": 0, "epoch": 2.0, "loss/total": 0.0, "loss/kd": 0.0},
    {"step": 5, "phase": 1, "epoch": 0.5, "loss/total": 3.0, "loss/ce": 3.0},
    {"step": 6, "phase": 1, "epoch": 1.0, "loss/total": 5.0, "loss/ce": 5.0},
]


def test_fit_curves_by_hand() -> None:
    panels, marks = fit_curves(PHASES, HISTORY, RECORDS)
    # one epoch axis through both phases: cool's epoch 1 is epoch 3; accuracy in %
    assert panels["validation accuracy (%)"] == {"student": [(1.0, 50.0), (2.0, 25.0), (3.0, 75.0)],
                                                 "teacher": [(1.0, 90.0), (2.0, 95.0), (3.0, 95.0)]}
    assert panels["validation nll"] == {"student": [(1.0, 1.25), (2.0, 1.5), (3.0, 1.0)]}
    assert panels["train loss/total (epoch mean)"] == {"loss/total": [(1, 3.0), (2, 0.5), (3, 4.0)]}
    assert panels["train loss/kd (epoch mean)"] == {"loss/kd": [(1, 3.0), (2, 0.5)]}
    assert panels["train loss/ce (epoch mean)"] == {"loss/ce": [(3, 4.0)]}
    assert marks == [(0.0, "warm T=4"), (2.0, "cool")]
    assert fit_curves(PHASES[:1], HISTORY[:2], RECORDS[:5])[1] == []  # one phase: nothing to mark


def test_write_fit_report_by_hand(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    for name in ("best-warm", "best-cool", "final"):
        (run.checkpoints / f"{name}.safetensors").write_bytes(b"")
    path = write_fit_report(run, PHASES, HISTORY, RECORDS)
    assert path == run.report
    text = path.read_text()
    assert "| warm | 2 | kd (w=1, T=4) |" in text and "| cool | 1 | ce (w=1) |" in text
    assert "| phase | row | epoch | accuracy (%) | nll | val_teacher accuracy (%) |" in text
    assert "| warm | best val/accuracy | 1 | 50.00 | 1.2500 | 90.00 |" in text
    assert "| warm | final | 2 | 25.00 | 1.5000 | 95.00 |" in text
    assert "| cool | best val/accuracy | 1 | 75.00 | 1.0000 | 95.00 |" in text
    assert "| cool | final | 1 | 75.00 | 1.0000 | 95.00 |" in text
    assert "`checkpoints/best-warm.safetensors`: the student at the best val/accuracy of phase warm (50.00 %, " \
           "epoch 1)" in text
    assert "`checkpoints/final.safetensors`" in text
    assert "last.safetensors" not in text and "`checkpoints/best.safetensors`" not in text  # only files there
    assert "![Validation metrics and loss terms per epoch](plots/training.png)" in text
    assert (run.plots / "training.png").read_bytes().startswith(b"\x89PNG")
    # a lower-is-better monitor picks the lowest row
    text = write_fit_report(run, PHASES, HISTORY, RECORDS, monitor="val/nll", mode="min").read_text()
    assert "| warm | best val/nll | 1 | 50.00 | 1.2500 | 90.00 |" in text


@pytest.mark.parametrize("records", [[], [{"step": 1, "lr": 0.1}]])
def test_write_fit_report_without_anything_to_plot(tmp_path: Path, records: list[dict[str, float]]) -> None:
    run = RunDir(tmp_path / "run")
    text = write_fit_report(run, PHASES[:1], [], records).read_text()
    assert "No validation set was given" in text and "_no checkpoints_" in text and "## Plots" not in text
    assert not run.plots.exists()
