"""DCS for text: the weighted objective by hand, a tiny end-to-end run of every arm, and bad recipes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from kd_core.errors import RecipeError, RunDirError
from kd_core.recipes import RunContext, load_recipe
from kd_core.sample_weights import CorrectiveWeights
from kd_nlu.methods.dcs import DCSConfig, DCSPlan, DCSSection, dcs_objective
from kd_nlu.testing import tiny_resources


def test_objective_weighs_each_sample_and_divides_by_the_weight_sum() -> None:
    weights = CorrectiveWeights(4)
    weights.weights = torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=torch.float64) / 1.5  # mean 1
    objective = dcs_objective(DCSSection(lam=0.25, temperature=2.0), weights)
    batch = {"index": torch.tensor([0, 1]), "label": torch.tensor([0, 1])}  # the terms read the sample ids
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    teacher = torch.tensor([[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    result = objective({"logits": student}, {"logits": teacher}, batch)
    # by hand: per-sample KL at T=2 (× 4) and CE, weights 1 and 3 -> (ℓ_0 + 3 ℓ_1) / 4
    p_t, log_s = (teacher / 2).softmax(-1), (student / 2).log_softmax(-1)
    kl = 4 * (p_t * (p_t.log() - log_s)).sum(-1)
    ce = -student.log_softmax(-1)[[0, 1], [0, 1]]
    expected = 0.25 * (kl[0] + 3 * kl[1]) / 4 + 0.75 * (ce[0] + 3 * ce[1]) / 4
    assert float(result.total) == pytest.approx(float(expected), rel=1e-5)
    # sample 0 disagrees (argmax 0 vs 1), sample 1 agrees: logged discordance 1/2
    assert float(result.terms["discordance"]) == pytest.approx(0.5)
    record = weights.apply()
    # eps = (1/1.5) / (4/1.5) = 1/4 -> the discordant sample's weight × sqrt(3), then mean 1 over all four
    assert record["epsilon"] == pytest.approx(0.25)
    raw = torch.tensor([math.sqrt(3), 3.0, 1.0, 1.0])
    assert weights.weights.tolist() == pytest.approx((raw / raw.mean()).tolist())


def test_tiny_end_to_end_run_of_every_arm(tmp_path) -> None:
    config = DCSConfig(seeds=[0], student={"init": "random", "train": {"epochs": 2, "lr": 1e-3, "batch_size": 12}})
    out = DCSPlan(config, resources=tiny_resources()).run(RunContext(out=tmp_path / "run", device="cpu"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]) == {"finetune", "self-kd", "dcs"}
    assert all(0 <= r["0"]["accuracy"] <= 1 for r in results["seeds"].values())
    updates = results["dcs_updates"]["0"]
    assert len(updates) == 6  # 36 texts / 12 per batch × 2 epochs: one update per step
    assert all(1e-6 <= u["epsilon"] <= 0.5 and u["max_weight"] <= 10 + 1e-9 for u in updates)
    report = (out / "report.md").read_text()
    assert "DCS" in report and (out / "plots" / "accuracy.png").is_file()
    assert (out / "dcs-seed0" / "metrics.jsonl").read_text().count("loss/discordance") == 6
    plan = DCSPlan(config, resources=tiny_resources())  # kd-nlu eval: the final checkpoints score as reported
    evaluated = plan.evaluate(out, device="cpu")
    for arm, by_seed in results["seeds"].items():
        assert evaluated[f"{arm}/seed0/accuracy"] == pytest.approx(by_seed["0"]["accuracy"])
    (out / "dcs-seed0" / "checkpoints" / "final.safetensors").unlink()
    with pytest.raises(RunDirError, match="dcs-seed0"):
        plan.evaluate(out, device="cpu")


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match=r"dcs\.lam"):
        load_recipe("dcs", ["dcs.lam=1.5"], domain="nlu")
    with pytest.raises(RecipeError, match="arms"):
        load_recipe("dcs", ["arms=[dcs, dcs]"], domain="nlu")
