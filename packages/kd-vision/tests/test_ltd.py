"""LTD, PGD-AT and defensive distillation: soft labels and loss by hand, forwards, configs, a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_vision.attacks import PGD
from kd_vision.cli import main
from kd_vision.methods.ltd import (
    DefensiveConfig,
    DefensivePlan,
    LTDConfig,
    LTDPlan,
    checks,
    ltd_cross_entropy,
    ltd_objective,
    soft_label_attack_forward,
    soft_labels,
)
from torch import nn

TINY = ["--set", "data.train_size=32", "--set", "data.val_size=10", "--set", "data.test_size=20",
        "--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "train_attack.steps=2", "--set", "eval.attack.steps=2", "--set", "eval.sweep=[0.0,0.1]",
        "--device", "cpu"]




TEACHER = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
STUDENT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])


def _softmax_by_hand(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_soft_labels_and_loss_by_hand(tau: float) -> None:
    q = soft_labels(TEACHER, tau)
    expected_q = [_softmax_by_hand(r, tau) for r in TEACHER.tolist()]
    assert q.flatten().tolist() == pytest.approx([v for row in expected_q for v in row], rel=1e-5)
    # loss: mean over the 2 samples of −Σ q log softmax(s) (the student's logits already carry 1/τ_S)
    rows = []
    for q_row, s_row in zip(expected_q, STUDENT.tolist()):
        log_z = math.log(sum(math.exp(v) for v in s_row))
        rows.append(-sum(qc * (sc - log_z) for qc, sc in zip(q_row, s_row)))
    assert float(ltd_cross_entropy(STUDENT, TEACHER, tau)) == pytest.approx(sum(rows) / 2, rel=1e-5)
    objective = ltd_objective(tau)
    total = objective({"logits": STUDENT}, {"logits": TEACHER}, {}).total
    assert float(total) == pytest.approx(sum(rows) / 2, rel=1e-5)


def test_a_low_teacher_temperature_sharpens_and_a_high_one_softens() -> None:
    top = {tau: soft_labels(TEACHER, tau).max(-1).values for tau in (0.5, 1.0, 2.0)}
    assert bool((top[0.5] > top[1.0]).all()) and bool((top[1.0] > top[2.0]).all())
    # numbers for the first row: z = (2, 0, −1)
    assert float(top[0.5][0]) == pytest.approx(1 / (1 + math.exp(-4) + math.exp(-6)), rel=1e-6)
    assert float(top[2.0][0]) == pytest.approx(1 / (1 + math.exp(-1) + math.exp(-1.5)), rel=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_non_positive_temperature_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="teacher_temperature"):
        soft_labels(TEACHER, bad)
    with pytest.raises(ConfigError, match="teacher_temperature"):
        ltd_objective(bad)


def test_the_attack_targets_the_teachers_soft_labels_on_the_clean_input() -> None:
    teacher = nn.Linear(4, 3)
    seen = {}

    class Recording(PGD):
        def __call__(self, model, x, target, generator=None):
            seen["x"], seen["target"] = x, target
            return x + 0.5

    attack = Recording(0.1, 0.025, 2)
    forward = soft_label_attack_forward(attack, teacher, 0.5)
    student = nn.Linear(4, 3).train()
    x = torch.randn(6, 4)
    out = forward(student, {"input": x, "label": torch.zeros(6, dtype=torch.long)})
    assert torch.equal(seen["x"], x)
    with torch.no_grad():
        assert torch.allclose(seen["target"], torch.softmax(teacher(x) / 0.5, -1))
        assert torch.allclose(out, student(x + 0.5))  # the student ran on the perturbed input


def test_the_deployed_ltd_model_keeps_the_student_temperature() -> None:
    plan = LTDPlan(LTDConfig(ltd={"teacher_temperature": 0.5, "student_temperature": 4.0}))
    model = plan.deployed(0).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), model.model(x) / 4.0)
    dd = DefensivePlan(DefensiveConfig(temperature=100.0))
    trained = dd.checkpoint_model(0).eval()
    with torch.no_grad():
        assert torch.allclose(dd.deploy(trained)(x), trained(x) * 100.0, rtol=1e-4, atol=1e-5)


def _summary(clean, pgd, cw, scaled, transfer, sweep) -> dict:
    values = {"clean": clean, "pgd": pgd, "cw": cw, "scaled": scaled, "rescaled": pgd, "transfer": transfer,
              "worst": min(pgd, cw)}
    return {**{k: {"mean": v, "std": 0.0} for k, v in values.items()}, "sweep": sweep}


def test_masking_checks_flag_a_masked_model_and_pass_a_robust_one() -> None:
    masked = checks(_summary(0.95, 0.90, 0.05, 0.02, 0.30, {"0": 0.95, "0.1": 0.90}))
    assert not masked["i_scaled_attack_collapse"]["passed"]
    assert not masked["ii_stable_across_scale_and_loss"]["passed"]
    assert not masked["iii_transfer_not_below_white_box"]["passed"]
    robust = checks(_summary(0.92, 0.70, 0.68, 0.80, 0.85, {"0": 0.92, "0.05": 0.85, "0.1": 0.70}))
    assert all(c["passed"] for c in robust.values())
    rising = checks(_summary(0.92, 0.70, 0.68, 0.71, 0.85, {"0": 0.92, "0.05": 0.60, "0.1": 0.70}))
    assert not rising["iv_epsilon_sweep"]["passed"]


@pytest.mark.parametrize(("override", "field"), [("train_attack.epsilon=-0.1", "train_attack.epsilon"),
                                                 ("ltd.teacher_temperature=0", "ltd.teacher_temperature"),
                                                 ("ltd.student_temperature=-2", "ltd.student_temperature"),
                                                 ("train_attack.steps=0", "train_attack.steps")])
def test_bad_settings_are_refused_before_training(tmp_path: Path, data_home: Path, override: str, field: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["distill", "--recipe", "ltd", "--out", str(out), "--set", override]) == 2
    assert field in capsys.readouterr().err
    assert not out.exists()


def test_tiny_ltd_run_writes_report_and_results(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "ltd", "--out", str(out), "--set", "ltd.teacher_temperature=0.5",
                 "--set", "ltd.student_temperature=2", *TINY]) == 0
    report = (out / "report.md").read_text()
    for needle in ("τ_T = 0.5", "τ_S = 2", "Gradient-masking checks", "transfer", "cw"):
        assert needle in report
    results = json.loads((out / "results.json").read_text())
    seed = results["seeds"]["0"]
    assert set(seed) >= {"clean", "pgd", "cw", "scaled", "rescaled", "transfer", "worst", "sweep"}
    assert seed["sweep"]["0"] == seed["clean"]  # ε = 0 is the clean accuracy
    assert seed["worst"] <= min(seed["clean"], seed["pgd"], seed["cw"], seed["scaled"], seed["rescaled"])
    assert (out / "plots" / "epsilon_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "student-seed0" / "checkpoints" / "final.safetensors").is_file()
    config = LTDConfig.model_validate({"data": {"train_size": 32, "val_size": 10, "test_size": 20}, "seeds": [0],
                                       "ltd": {"student_temperature": 2}})
    scores = LTDPlan(config).evaluate(out, "cpu")  # `kd-vision eval`: reloads the deployed model, 1/τ_S included
    assert scores["seed0/clean"] == pytest.approx(seed["clean"])
