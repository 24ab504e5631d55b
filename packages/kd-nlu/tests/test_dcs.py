"""DCS for text: the weighted objective by hand, arms and roles, a toy CLI study of every arm, bad recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import load_recipe
from kd_core.sample_weights import CorrectiveWeights
from kd_nlu.cli import main
from kd_nlu.methods.dcs import DCSConfig, DCSSection, arms, dcs_objective
from kd_nlu.testing import toy_study_files


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


def test_arms_and_roles() -> None:
    built = arms(DCSConfig(), task=None)
    assert {n: a.role for n, a in built.items()} == {"finetune": "scratch", "self-kd": "kd", "dcs": "variant"}
    assert built["finetune"].signal is None and built["dcs"].fit is not None
    assert [t.sample_weight for t in built["self-kd"].phases()[0].objective.terms] == [None, None]
    assert list(arms(DCSConfig(arms=["dcs", "finetune"]), task=None)) == ["dcs", "finetune"]


def test_toy_cli_study_of_every_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    toy = [*toy_study_files(tmp_path / "toy"), "--set", "student.epochs=2", "--device", "cpu"]
    assert main(["distill", "--recipe", "dcs", "--out", str(out), *toy]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {a: r["role"] for a, r in results["arms"].items()} == {"finetune": "scratch", "self-kd": "kd",
                                                                  "dcs": "variant"}
    assert all(0 <= r["seeds"]["0"]["accuracy"] <= 1 for r in results["arms"].values())
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("self-kd", "finetune"), ("dcs", "self-kd"),
                                                                  ("dcs", "finetune")]
    updates = json.loads((out / "dcs-seed0" / "dcs-weights.json").read_text())
    assert len(updates) == 6  # 36 texts / 12 per batch × 2 epochs: one update per step
    assert all(1e-6 <= u["epsilon"] <= 0.5 and u["max_weight"] <= 10 + 1e-9 for u in updates)
    assert (out / "dcs-seed0" / "metrics.jsonl").read_text().count("loss/discordance") == 6
    assert "discordance" not in (out / "self-kd-seed0" / "metrics.jsonl").read_text()
    report = (out / "report.md").read_text()
    assert "**Plain KD against scratch**" in report and "## DCS weights" in report
    assert report.index("## DCS weights") < report.index("## Reproduce")
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    (out / "dcs-seed0" / "checkpoints" / "final.safetensors").unlink()
    assert main(["eval", str(out), "--device", "cpu"]) != 0  # a missing checkpoint is an error, not a score


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match=r"dcs\.lam"):
        load_recipe("dcs", ["dcs.lam=1.5"], domain="nlu")
    with pytest.raises(RecipeError, match="arms"):
        load_recipe("dcs", ["arms=[dcs, dcs]"], domain="nlu")
