"""The annealing-kd / mse-kd plans: their phases, config checks, a tiny end-to-end run, and the paper's claim (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kd_core.annealing import AnnealedScale
from kd_vision.cli import main
from kd_vision.methods.annealing import AnnealingConfig, student_phases, verdict

TINY = ["--set", "data.source=sklearn8x8", "--set", "data.train_size=48", "--set", "data.teacher_train_size=48",
        "--set", "data.val_size=24", "--set", "data.test_size=48", "--set", "teacher.epochs=1",
        "--set", "annealing.tau_max=2", "--set", "annealing.phase1_epochs=2", "--set", "annealing.phase2_epochs=1",
        "--set", "seeds=[0]", "--set", "latency_iterations=2", "--device", "cpu"]




def _config(**changes) -> AnnealingConfig:
    return AnnealingConfig.model_validate({"name": "t", **changes})


def test_each_arm_trains_through_its_own_phases() -> None:
    config = _config(annealing={"tau_max": 4, "phase1_epochs": 8, "phase2_epochs": 3}, student={"lr": 0.02})
    akd = student_phases(config, "annealing-kd")
    assert [(p.name, p.epochs, p.restore_best) for p in akd] == [("phase1", 8, True), ("phase2", 3, False)]
    scale = akd[0].objective.terms[0].options["scale"]
    assert isinstance(scale, AnnealedScale) and scale.temperatures() == [4, 4, 3, 3, 2, 2, 1, 1]
    assert not akd[1].objective.needs_teacher and akd[1].objective.terms[0].target == "label"
    mse = student_phases(config, "mse-kd")
    assert mse[0].objective.terms[0].options["scale"] == 1.0 and mse[0].restore_best
    kd, scratch = student_phases(config, "hinton-kd"), student_phases(config, "scratch")
    assert [p.epochs for p in kd] == [p.epochs for p in scratch] == [11]  # the same budget, E₁ + E₂
    assert [t.name for t in kd[0].objective.terms] == ["kd", "ce"]
    assert [t.name for t in scratch[0].objective.terms] == ["ce"]


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="tau_max"):
        _config(annealing={"tau_max": 0})
    with pytest.raises(ValueError, match="phase1_epochs"):
        _config(annealing={"tau_max": 10, "phase1_epochs": 5})
    _config(annealing={"tau_max": 10, "phase1_epochs": 5}, method="mse-kd", arms=["mse-kd"])  # nothing annealed
    with pytest.raises(ValueError, match="own arm"):
        _config(method="mse-kd", arms=["annealing-kd", "scratch"])
    with pytest.raises(ValueError, match="colour"):
        _config(student={"colour": "red"})
    # any build_model name: the model is only built when the plan runs
    assert _config(student={"model": "resnet8"}, teacher={"model": "resnet110", "epochs": 1, "lr": 0.1})


def test_verdict_reads_the_papers_direction() -> None:
    def summary(**acc: float) -> dict:
        return {arm.replace("_", "-"): {"accuracy_mean": v} for arm, v in acc.items()}

    held = verdict(summary(annealing_kd=0.90, mse_kd=0.85, hinton_kd=0.90, scratch=0.88))
    assert held["paper_direction_held"] and held["akd_gt_mse"] and "**held**" in held["sentence"]
    below_kd = verdict(summary(annealing_kd=0.89, mse_kd=0.90, hinton_kd=0.90, scratch=0.88))
    assert not below_kd["paper_direction_held"] and not below_kd["akd_gt_mse"]
    assert "**did not hold**" in below_kd["sentence"] and "≥ vanilla KD: no, > scratch: yes" in below_kd["sentence"]
    tie_scratch = verdict(summary(annealing_kd=0.88, hinton_kd=0.80, scratch=0.88))
    assert not tie_scratch["paper_direction_held"]
    control_only = verdict(summary(mse_kd=0.9, scratch=0.85))  # the mse-kd recipe has no annealing arm
    assert "paper_direction_held" not in control_only
    assert control_only["sentence"].startswith("MSE-KD (no annealing) reached 90.00%")


def test_tiny_run_writes_report_and_results(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("annealing-KD", "MSE-KD (no annealing)", "vanilla KD (Hinton)", "scratch", "ECE",
                   "paper's direction", "T per phase-I epoch: [2, 1]"):
        assert needle in report
    results = json.loads((out / "results.json").read_text())
    assert results["arms"] == ["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
    for arm in results["arms"]:
        assert 0.0 <= results["seeds"][arm]["0"]["accuracy"] <= 1.0
        assert 0.0 <= results["summary"][arm]["ece_mean"] <= 1.0
    assert results["phase1_schedule"] == {"tau_max": 2, "temperature": [2, 1], "phi": [0.5, 1.0]}
    assert results["best_phase1_epoch"]["annealing-kd"]["0"] in (1, 2)
    assert isinstance(results["verdict"]["paper_direction_held"], bool)
    assert (out / "plots" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "teacher-outputs" / "meta.json").is_file()  # the teacher ran once; every arm read its logits
    # the two-phase arms ran both phases; the scratch twin had no teacher
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("phase_name") for r in rows if "phase_name" in r} == {"phase1", "phase2"}
    assert any("loss/mse" in r for r in rows) and any("loss/ce" in r for r in rows)


def test_tau_max_below_one_is_refused_before_training(tmp_path: Path, data_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), "--set", "annealing.tau_max=0"]) == 2
    err = capsys.readouterr().err
    assert "annealing.tau_max" in err and "0" in err
    assert not out.exists() and not data_home.exists()  # nothing trained, not even the teacher
    assert main(["distill", "--recipe", "mse-kd", "--out", str(out), "--set", "annealing.tau_max=0"]) == 2
    assert not out.exists()


@pytest.mark.slow
def test_annealing_kd_beats_its_scratch_twin_over_three_seeds(tmp_path: Path) -> None:
    """The paper's claim on real digits, at the recipe's size: annealing-KD > scratch (mean of 3 seeds)."""
    out = tmp_path / "demo"
    args = ["distill", "--recipe", "annealing-kd", "--out", str(out), "--device", "cpu",
            "--set", "arms=[annealing-kd, scratch]"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    akd = [r["accuracy"] for r in results["seeds"]["annealing-kd"].values()]
    scratch = [r["accuracy"] for r in results["seeds"]["scratch"].values()]
    assert len(akd) == len(scratch) == 3
    assert sum(akd) / 3 > sum(scratch) / 3
