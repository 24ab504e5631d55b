"""Annealing-KD for text: the phases and Φ schedule by hand, arms and comparisons, a toy CLI study, bad recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import load_recipe
from kd_nlu.cli import main
from kd_nlu.methods.annealing import AnnealingTextConfig, arm_phases, arms, compare
from kd_nlu.testing import toy_study_files


def test_phases_and_the_annealed_target_by_hand() -> None:
    config = AnnealingTextConfig(annealing={"tau_max": 3, "phase1_epochs": 3, "phase2_epochs": 2})
    phase1, phase2 = arm_phases(config, "annealing-kd")
    assert (phase1.epochs, phase2.epochs, phase1.restore_best) == (3, 2, True)
    term = phase1.objective.terms[0]
    assert [term.options["scale"](p) for p in (0.1, 0.5, 0.9)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    student, teacher = torch.tensor([[1.0, -1.0, 0.0]]), torch.tensor([[3.0, 0.0, -3.0]])
    # epoch 0: Φ = 1/3, MSE(z_s, z_t / 3) = ((1 - 1)² + (-1 - 0)² + (0 + 1)²) / 3
    value = phase1.objective({"logits": student}, {"logits": teacher}, {}, progress=0.1).total
    assert float(value) == pytest.approx(2 / 3)
    assert [t.name for t in phase2.objective.terms] == ["ce"]
    mse = arm_phases(config, "mse-kd")[0].objective.terms[0]
    assert mse.options["scale"] == 1.0
    kd, scratch = arm_phases(config, "hinton-kd"), arm_phases(config, "scratch")
    assert [p.epochs for p in kd] == [p.epochs for p in scratch] == [5]  # the same budget, E1 + E2
    assert [t.name for t in kd[0].objective.terms] == ["kd", "ce"]


def test_arms_roles_and_comparisons() -> None:
    config = AnnealingTextConfig()
    built = arms(config, task=None)
    assert {n: a.role for n, a in built.items()} == {"annealing-kd": "variant", "mse-kd": "baseline",
                                                     "hinton-kd": "kd", "scratch": "scratch"}
    assert built["scratch"].signal is None and built["annealing-kd"].signal is not None
    assert compare(config, built)[:3] == [("hinton-kd", "scratch"), ("annealing-kd", "hinton-kd"),
                                          ("annealing-kd", "scratch")]
    assert compare(config, {k: v for k, v in built.items() if k != "scratch"}) == [
        ("annealing-kd", "hinton-kd"), ("annealing-kd", "mse-kd"), ("mse-kd", "hinton-kd")]


def test_toy_cli_study_of_every_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    toy = [*toy_study_files(tmp_path / "toy"), "--set", "annealing.tau_max=2", "--set", "annealing.phase1_epochs=2",
           "--set", "annealing.phase2_epochs=1", "--device", "cpu"]
    assert main(["distill", "--recipe", "annealing-kd", "--out", str(out), *toy]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["annealing-kd", "mse-kd", "hinton-kd", "scratch"]
    assert {a: r["role"] for a, r in results["arms"].items()}["hinton-kd"] == "kd"
    assert all(0 <= r["seeds"]["0"]["accuracy"] <= 1 for r in results["arms"].values())
    assert "trained in this run" in results["teacher"]["source"]  # teacher.trained=false: fine-tuned and cached
    assert [(c["a"], c["b"]) for c in results["comparisons"]][:2] == [("hinton-kd", "scratch"),
                                                                      ("annealing-kd", "hinton-kd")]
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase_name"] for r in rows if "phase_name" in r] == ["phase1", "phase1", "phase2"]
    assert (out / "teacher-outputs" / "meta.json").is_file()  # the teacher ran once; every arm read its logits
    report = (out / "report.md").read_text()
    for needle in ("**Teacher**", "**Plain KD against scratch**", "T per phase-I epoch: [2, 1]", "**annealing-kd**"):
        assert needle in report
    assert (out / "annealing-kd-seed0" / "model" / "config.json").is_file()  # saved with save_pretrained
    assert main(["eval", str(out), "--device", "cpu"]) == 0  # the final checkpoints reload and score


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match="phase1_epochs"):
        load_recipe("annealing-kd", ["annealing.phase1_epochs=3"], domain="nlu")
    with pytest.raises(RecipeError, match="tau_max"):
        load_recipe("annealing-kd", ["annealing.tau_max=0"], domain="nlu")
