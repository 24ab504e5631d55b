"""Annealing-KD for text: the phases and Φ schedule by hand, a tiny end-to-end run of every arm, bad recipes."""

from __future__ import annotations

import json

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import RunContext, load_recipe
from kd_nlu.methods.annealing import AnnealingTextConfig, AnnealingTextPlan, arm_phases
from kd_nlu.testing import tiny_resources


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
    assert [p.epochs for p in arm_phases(config, "hinton-kd")] == [5]  # the same budget, E1 + E2


def test_tiny_end_to_end_run_of_every_arm(tmp_path) -> None:
    config = AnnealingTextConfig(seeds=[0], annealing={"tau_max": 2, "phase1_epochs": 2, "phase2_epochs": 1},
                                 student={"train": {"epochs": 3, "lr": 1e-3, "batch_size": 12}})
    out = AnnealingTextPlan(config, resources=tiny_resources()).run(RunContext(out=tmp_path / "run", device="cpu"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]) == {"annealing-kd", "mse-kd", "hinton-kd", "scratch"}
    assert results["phi"] == [0.5, 1.0]
    rows = [json.loads(line) for line in (out / "annealing-kd-seed0" / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase_name"] for r in rows if "phase_name" in r]
    assert phases == ["phase1", "phase1", "phase2"]  # one validation row per epoch, in phase order
    assert "Annealing-KD" in (out / "report.md").read_text()
    evaluated = AnnealingTextPlan(config, resources=tiny_resources()).evaluate(out, device="cpu")
    assert {k: v for k, v in evaluated.items() if k.endswith("accuracy")} == pytest.approx(
        {f"{arm}/seed0/accuracy": r["0"]["accuracy"] for arm, r in results["seeds"].items()})


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match="phase1_epochs"):
        load_recipe("annealing-kd", ["annealing.phase1_epochs=3"], domain="nlu")
    with pytest.raises(RecipeError, match="tau_max"):
        load_recipe("annealing-kd", ["annealing.tau_max=0"], domain="nlu")
