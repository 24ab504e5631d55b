"""The annealing-kd / mse-kd methods: their phases, arms, config checks, a tiny end-to-end study, and the paper's
claim (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kd_core.annealing import AnnealedScale
from kd_vision.cli import main
from kd_vision.methods.annealing import AnnealingConfig, arms, compare, student_phases

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


def test_arms_roles_and_comparisons() -> None:
    config = _config()
    built = arms(config, task=None)
    assert {n: a.role for n, a in built.items()} == {"annealing-kd": "variant", "mse-kd": "baseline",
                                                     "hinton-kd": "kd", "scratch": "scratch"}
    assert built["scratch"].signal is None and built["annealing-kd"].signal is not None
    assert compare(config, built) == [("hinton-kd", "scratch"), ("annealing-kd", "hinton-kd"),
                                      ("annealing-kd", "scratch"), ("annealing-kd", "mse-kd"), ("mse-kd", "hinton-kd")]
    control = _config(method="mse-kd", arms=["mse-kd", "hinton-kd", "scratch"])
    assert arms(control, task=None)["mse-kd"].role == "variant"
    assert compare(control, arms(control, task=None))[1:] == [("mse-kd", "hinton-kd"), ("mse-kd", "scratch")]


def test_tiny_run_writes_report_and_results(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("**annealing-kd**", "**mse-kd**", "**hinton-kd**", "**scratch**", "ece %",
                   "**Plain KD against scratch**", "T per phase-I epoch: [2, 1]"):
        assert needle in report
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
    for arm in results["arms"].values():
        assert 0.0 <= arm["seeds"]["0"]["accuracy"] <= 1.0
    assert [(c["a"], c["b"]) for c in results["comparisons"]][:2] == [("hinton-kd", "scratch"),
                                                                      ("annealing-kd", "hinton-kd")]
    assert (out / "plots" / "headline.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "teacher-outputs" / "meta.json").is_file()  # the teacher ran once; every arm read its logits
    # the two-phase arms ran both phases, restoring the best phase-I student; the scratch twin had no teacher
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("phase_name") for r in rows if "phase_name" in r} == {"phase1", "phase2"}
    assert any("loss/mse" in r for r in rows) and any("loss/ce" in r for r in rows)
    assert (out / "annealing-kd-seed0" / "checkpoints" / "best-phase1.safetensors").is_file()


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
    (versus_scratch,) = [c for c in results["comparisons"] if (c["a"], c["b"]) == ("annealing-kd", "scratch")]
    assert versus_scratch["n"] == 3 and versus_scratch["mean"] > 0
