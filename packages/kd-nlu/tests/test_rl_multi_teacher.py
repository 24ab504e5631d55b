"""Reinforced multi-teacher selection for text: label noise and oracle weights by hand, the REINFORCE sign on
real teacher outputs, a tiny end-to-end run of every arm, and bad recipes."""

from __future__ import annotations

import json

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import RunContext, load_recipe
from kd_core.reinforced import ReinforcedWeighting, bernoulli_log_prob
from kd_nlu.data.text import TextCollator, encoder_forward
from kd_nlu.methods.rl_multi_teacher import OracleWeighting, RLConfig, RLPlan, noisy_labels
from kd_nlu.testing import tiny_resources


def test_noisy_labels_touch_only_the_noisy_group() -> None:
    labels = list(range(6)) * 5
    noisy = noisy_labels(labels, 6, 1.0, 0, 3, seed=0)  # group 0 = classes {0, 1}: every one changed
    assert all((a != b) == (a in (0, 1)) for a, b in zip(labels, noisy))
    assert noisy_labels(labels, 6, 0.0, None, 3, seed=0) == labels
    assert all(a != b for a, b in zip(labels, noisy_labels(labels, 6, 1.0, None, 3, seed=1)))


def test_oracle_weights_the_teachers_that_are_right() -> None:
    right = {"logits": torch.tensor([[2.0, 0.0], [0.0, 2.0]])}
    wrong = {"logits": torch.tensor([[0.0, 2.0], [0.0, 2.0]])}
    weights = OracleWeighting()([right, wrong], {"label": torch.tensor([0, 0])}, 0.0)
    assert weights.tolist() == [[1.0, 0.0], [0.5, 0.5]]  # nobody right on the second text: uniform


def test_reinforce_sign_on_text_teacher_outputs() -> None:
    res = tiny_resources(teachers=2)
    batch = TextCollator(0)([res.splits["train"][i] for i in range(6)])
    outputs = [{"logits": encoder_forward(m, batch).logits.detach()} for m in res.teachers.values()]
    for reward, direction in ((1.0, 1), (-1.0, -1)):
        w = ReinforcedWeighting(2, 3, hidden=8, lr=0.05, entropy_bonus=0.0, seed=0)
        w(outputs, batch, 0.0)
        states, actions = w._pending[0]
        with torch.no_grad():
            before = float(bernoulli_log_prob(w.logits(states), actions).sum())
        w.update(reward)
        with torch.no_grad():
            after = float(bernoulli_log_prob(w.logits(states), actions).sum())
        assert (after - before) * direction > 0


def test_tiny_end_to_end_run_of_every_arm(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "data"))
    config = RLConfig(
        seeds=[0], student={"train": {"epochs": 2, "lr": 1e-3, "batch_size": 12}},
        extra_teachers=[{"name": "noisy", "layers": 1, "hidden": 16, "intermediate": 32, "label_noise": 0.6,
                         "noisy_group": 0, "train": {"epochs": 1, "lr": 1e-3, "batch_size": 12}}],
        policy={"hidden": 8, "warmup_steps": 1, "dev_size": 12})
    plan = RLPlan(config, resources=tiny_resources(teachers=2))
    out = plan.run(RunContext(out=tmp_path / "run", device="cpu"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]) == {"ce", "best-single", "uniform", "rl", "oracle"}
    assert set(results["teachers"]) == {"t0", "t1", "noisy"} and results["best_single"] in results["teachers"]
    rates = results["selection_rates"]["0"]
    assert len(rates) == 3 and all(len(row) == 3 and all(0 <= r <= 1 for r in row) for row in rates)
    policy = plan.policies[0]
    assert policy.steps == 6 and len(policy.history) == 5  # one reward per step after one warm-up step
    assert list((tmp_path / "data" / "teachers").glob("gloss-noisy-*.safetensors"))  # the extra teacher is cached
    assert "RL selection" in (out / "report.md").read_text()
    evaluated = plan.evaluate(out, device="cpu")
    assert {k: v for k, v in evaluated.items() if k.endswith("accuracy")} == pytest.approx(
        {f"{arm}/seed0/accuracy": r["0"]["accuracy"] for arm, r in results["seeds"].items()})


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match="reward"):
        load_recipe("rl-multi-teacher", ["policy.reward=accuracy"], domain="nlu")
    with pytest.raises(RecipeError, match="extra_teachers"):
        load_recipe("rl-multi-teacher", ["extra_teachers=[{name: minilm}]"], domain="nlu")
