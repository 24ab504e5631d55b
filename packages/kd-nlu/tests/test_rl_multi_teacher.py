"""Reinforced multi-teacher selection for text: label noise and oracle weights by hand, the REINFORCE sign on
text teacher outputs, arms and roles, a toy CLI study of every arm, and bad recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core.errors import RecipeError
from kd_core.recipes import load_recipe
from kd_core.reinforced import ReinforcedWeighting, bernoulli_log_prob
from kd_nlu.cli import main
from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward
from kd_nlu.methods.rl_multi_teacher import OracleWeighting, RLConfig, arms, compare, noisy_labels
from kd_nlu.testing import VOCAB, tiny_bert, toy_study_files, toy_texts
from transformers import BertTokenizerFast


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
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    data = TextDataset(*toy_texts(6, 0), tokenizer, max_length=8)
    batch = TextCollator(0)([data[i] for i in range(6)])
    outputs = [{"logits": encoder_forward(tiny_bert(100 + k).eval(), batch).logits.detach()} for k in range(2)]
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


def test_arms_roles_and_comparisons() -> None:
    config = RLConfig()
    built = arms(config, task=None)
    assert {n: a.role for n, a in built.items()} == {"ce": "scratch", "best-single": "kd", "uniform": "baseline",
                                                     "oracle": "baseline", "rl": "variant"}
    assert built["ce"].fit is None and all(built[n].fit is not None for n in ("best-single", "uniform", "rl"))
    assert compare(config, built)[:2] == [("best-single", "ce"), ("rl", "best-single")]


def test_toy_cli_study_of_every_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    extra = ("extra_teachers=[{name: noisy, layers: 1, hidden: 16, intermediate: 32, label_noise: 0.6, "
             "noisy_group: 0, train: {epochs: 1, lr: 0.001, batch_size: 12}}]")
    toy = [*toy_study_files(tmp_path / "toy"), "--set", "student.epochs=2", "--set", extra,
           "--set", "policy={hidden: 8, warmup_steps: 1, dev_size: 12}", "--device", "cpu"]
    assert main(["distill", "--recipe", "rl-multi-teacher", "--out", str(out), *toy]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["ce", "best-single", "uniform", "oracle", "rl"]
    assert all(0 <= r["seeds"]["0"]["accuracy"] <= 1 for r in results["arms"].values())
    assert [(c["a"], c["b"]) for c in results["comparisons"]][:2] == [("best-single", "ce"), ("rl", "best-single")]
    pool = json.loads((out / "teachers.json").read_text())
    assert list(pool["teachers"]) == ["teacher", "noisy"] and pool["best_single"] in pool["teachers"]
    assert all(len(t["class_accuracy"]) == 3 for t in pool["teachers"].values())
    selection = json.loads((out / "rl-seed0" / "selection.json").read_text())
    assert selection["teachers"] == ["teacher", "noisy"]
    assert len(selection["rates"]) == 3 and all(len(r) == 2 and all(0 <= v <= 1 for v in r)
                                                for r in selection["rates"])
    assert selection["steps"] == 6 and selection["rewards"] == 5  # one reward per step after one warm-up step
    assert list((tmp_path / "home" / "teachers").glob("text-noisy-*.safetensors"))  # the extra teacher is cached
    report = (out / "report.md").read_text()
    assert "**Plain KD against scratch**" in report and "## Teachers" in report and "## Policy selection" in report
    assert main(["eval", str(out), "--device", "cpu"]) == 0


def test_bad_recipe_values_name_the_field() -> None:
    with pytest.raises(RecipeError, match="reward"):
        load_recipe("rl-multi-teacher", ["policy.reward=accuracy"], domain="nlu")
    with pytest.raises(RecipeError, match="extra_teachers"):
        load_recipe("rl-multi-teacher", ["extra_teachers=[{name: teacher}]"], domain="nlu")
