"""LTD, PGD-AT and defensive distillation as arms: losses by hand, forwards, the robust evaluator on a model whose
gradients are masked, arms and comparisons, config checks, and a toy-size CLI run of each recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, load_recipe
from kd_vision.attacks import PGD, LogitScale
from kd_vision.cli import main
from kd_vision.methods.ltd import (
    COLUMNS,
    PAIRS,
    AdversarialConfig,
    CleanAndAdversarialForward,
    EvalConfig,
    RobustEvaluator,
    arm_phases,
    arms,
    checks,
    compare,
    kl_attack,
    label_attack_forward,
    ltd_cross_entropy,
    ltd_objective,
    soft_label_attack_forward,
    soft_labels,
    sweep_key,
    task,
    trades_loss,
)
from torch import nn

TINY = {"data.train_size": 32, "data.val_size": 10, "data.test_size": 20, "teacher.epochs": 1, "student.epochs": 1,
        "defensive.epochs": 1, "defensive.teacher_epochs": 1, "seeds": "[0]", "train_attack.steps": 2,
        "eval.attack.steps": 2, "eval.restarts": 1, "eval.sweep": "[0.0,0.1,0.15]", "latency_iterations": 1}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")] + ["--device", "cpu"]

TEACHER = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
STUDENT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])


def _softmax_by_hand(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize(("tau_t", "tau_s"), [(0.5, 1.0), (2.0, 1.0), (100.0, 100.0)])
def test_soft_labels_and_loss_by_hand(tau_t: float, tau_s: float) -> None:
    q = soft_labels(TEACHER, tau_t)
    expected_q = [_softmax_by_hand(r, tau_t) for r in TEACHER.tolist()]
    assert q.flatten().tolist() == pytest.approx([v for row in expected_q for v in row], rel=1e-5)
    # loss: mean over the 2 samples of −Σ q log softmax(s/τ_S)
    rows = []
    for q_row, s_row in zip(expected_q, STUDENT.tolist(), strict=True):
        log_z = math.log(sum(math.exp(v / tau_s) for v in s_row))
        rows.append(-sum(qc * (sc / tau_s - log_z) for qc, sc in zip(q_row, s_row, strict=True)))
    assert float(ltd_cross_entropy(STUDENT, TEACHER, tau_t, tau_s)) == pytest.approx(sum(rows) / 2, rel=1e-5)
    total = ltd_objective(tau_t, tau_s)({"logits": STUDENT}, {"logits": TEACHER}, {}).total
    assert float(total) == pytest.approx(sum(rows) / 2, rel=1e-5)


def test_a_low_teacher_temperature_sharpens_and_a_high_one_softens() -> None:
    top = {tau: soft_labels(TEACHER, tau).max(-1).values for tau in (0.5, 1.0, 2.0)}
    assert bool((top[0.5] > top[1.0]).all()) and bool((top[1.0] > top[2.0]).all())
    assert float(top[0.5][0]) == pytest.approx(1 / (1 + math.exp(-4) + math.exp(-6)), rel=1e-6)
    assert float(top[2.0][0]) == pytest.approx(1 / (1 + math.exp(-1) + math.exp(-1.5)), rel=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_non_positive_temperature_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="teacher_temperature"):
        soft_labels(TEACHER, bad)
    with pytest.raises(ConfigError, match="teacher_temperature"):
        ltd_objective(bad)
    with pytest.raises(ConfigError, match="student_temperature"):
        ltd_objective(1.0, bad)


class _Recording(PGD):
    def __call__(self, model, x, target, generator=None):
        self.seen = {"x": x, "target": target}
        return x + 0.5


def test_trades_loss_by_hand_with_labels_and_with_soft_labels() -> None:
    clean, adversarial = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    logits = torch.tensor([clean, adversarial])
    p, p_adv = _softmax_by_hand(clean, 1.0), _softmax_by_hand(adversarial, 1.0)
    kl = sum(a * math.log(a / b) for a, b in zip(p, p_adv, strict=True))
    # one-hot: CE(y = 0, p(x)) + β·KL(p(x) ‖ p(x_adv))
    assert float(trades_loss(logits, torch.tensor([0]), beta=2.0)) == pytest.approx(-math.log(p[0]) + 2 * kl, rel=1e-5)
    # LTD's form: the label is softmax(z_T/τ_T)
    q = _softmax_by_hand(TEACHER[0].tolist(), 0.5)
    expected = -sum(qc * math.log(pc) for qc, pc in zip(q, p, strict=True)) + 6 * kl
    assert float(trades_loss(logits, TEACHER[:1], teacher_temperature=0.5)) == pytest.approx(expected, rel=1e-5)
    logits.requires_grad_(True)
    trades_loss(logits, torch.tensor([0])).backward()
    assert bool((logits.grad[0] != 0).any()) and bool((logits.grad[1] != 0).any())  # both halves learn
    with pytest.raises(ConfigError, match="student"):
        trades_loss(torch.zeros(3, 3), torch.tensor([0]))
    with pytest.raises(ConfigError, match="beta"):
        trades_loss(logits, torch.tensor([0]), beta=-1.0)


def test_trades_trains_on_clean_and_adversarial_inputs_and_attacks_its_own_prediction() -> None:
    student = nn.Linear(4, 3).train()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    attack = _Recording(0.1, 0.025, 2)
    out = CleanAndAdversarialForward(kl_attack(attack))(student, {"input": x, "label": y})
    with torch.no_grad():
        assert torch.allclose(out, student(torch.cat([x, x + 0.5])))  # [clean; adversarial] in one batch
        assert torch.allclose(attack.seen["target"], torch.softmax(student(x), -1))  # KL to its own clean p(x)
        assert CleanAndAdversarialForward(kl_attack(attack))(student.eval(), {"input": x}).shape == (6, 3)


def test_ltd_attacks_the_teachers_soft_labels_and_pgd_at_the_labels() -> None:
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3).train()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    attack = _Recording(0.1, 0.025, 2)
    out = soft_label_attack_forward(attack, teacher, 0.5)(student, {"input": x, "label": y})
    assert torch.equal(attack.seen["x"], x)
    with torch.no_grad():
        assert torch.allclose(attack.seen["target"], torch.softmax(teacher(x) / 0.5, -1))
        assert torch.allclose(out, student(x + 0.5))  # the student ran on the perturbed input
    label_attack_forward(attack)(student, {"input": x, "label": y})
    assert torch.equal(attack.seen["target"], y)


class _Threshold(nn.Module):
    """Class 1 iff x > 0.5, with logits ±scale·(x − 0.5): a huge scale saturates softmax and masks CE gradients."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cat([0.5 - x, x - 0.5], dim=-1)


def _evaluate(model: nn.Module, reference: nn.Module) -> dict[str, float]:
    config = EvalConfig(attack={"epsilon": 0.1, "step_size": 0.05, "steps": 5}, sweep=[0.0, 0.03, 0.1])
    x = torch.tensor([[0.44]] * 10 + [[0.56]] * 10)
    batches = [{"input": x, "label": (x[:, 0] > 0.5).long()}]
    return RobustEvaluator(config, (0.0, 1.0), reference)(model, batches, lambda m, b: m(b["input"]))


def test_the_evaluator_exposes_a_masked_model_that_pgd_alone_would_call_robust() -> None:
    honest = _Threshold(10.0)
    masked = _evaluate(_Threshold(1e4), reference=honest)
    assert masked["accuracy"] == 1.0 and masked[sweep_key(0.0)] == 1.0
    assert masked["pgd_accuracy"] >= 0.5  # CE gradients are exactly 0: only the random start moves the input
    assert masked["scaled_accuracy"] == masked["cw_accuracy"] == masked["transfer_accuracy"] == 0.0
    assert masked["robust_accuracy"] == 0.0  # the headline is the per-sample worst case
    flagged = checks(masked, [0.0, 0.03, 0.1])
    assert not flagged["i_scaled_attack_collapse"]["passed"]
    assert not flagged["ii_stable_across_scale_and_loss"]["passed"]
    assert not flagged["iii_transfer_not_below_white_box"]["passed"]
    robust = _evaluate(honest, reference=honest)  # ε = 0.1 crosses the boundary: every attack succeeds alike
    assert robust["pgd_accuracy"] == robust["scaled_accuracy"] == robust["robust_accuracy"] == 0.0
    assert robust[sweep_key(0.03)] == 1.0  # 0.44 + 0.03 stays below 0.5
    assert all(c["passed"] for c in checks(robust, [0.0, 0.03, 0.1]).values())
    rising = {**robust, sweep_key(0.03): 0.5, sweep_key(0.1): 0.9}
    assert not checks(rising, [0.0, 0.03, 0.1])["iv_epsilon_sweep"]["passed"]


def test_arms_roles_phases_and_comparisons(data_home: Path) -> None:
    config = AdversarialConfig(ltd={"teacher_temperature": 0.5, "student_temperature": 4.0})
    built = arms(config, task(config, RunContext(out=Path("unused"))))
    assert {n: a.role for n, a in built.items()} == {"ltd": "variant", "pgd-at": "scratch", "ltd-trades": "variant",
                                                     "trades": "scratch", "defensive-distillation": "baseline",
                                                     "standard": "scratch"}
    assert compare(config, built) == PAIRS
    deployed = built["ltd"].student(0).eval()
    assert isinstance(deployed, LogitScale) and deployed.scale == 0.25  # τ_S travels with the deployed model
    assert built["pgd-at"].student is None and all(a.fit is not None for a in built.values())
    (ltd,) = arm_phases(config, "ltd")[0].objective.terms
    assert (ltd.teacher, ltd.options["teacher_temperature"], ltd.options["student_temperature"]) == ("logits", 0.5, 1)
    (dd_phase,) = arm_phases(config, "defensive-distillation")
    assert dd_phase.epochs == 40 and dd_phase.objective.terms[0].options["student_temperature"] == 100.0
    assert [t.target for t in arm_phases(config, "pgd-at")[0].objective.terms] == ["label"]
    both = AdversarialConfig(arms=["ltd", "pgd-at", "ltd-trades", "trades"], trades={"beta": 3.0})
    built = arms(both, task(both, RunContext(out=Path("unused"))))
    assert {n: a.role for n, a in built.items()} == {"ltd": "variant", "pgd-at": "scratch", "ltd-trades": "variant",
                                                     "trades": "scratch"}
    assert compare(both, built) == [("ltd", "pgd-at"), ("ltd-trades", "trades")]
    assert isinstance(built["ltd-trades"].student(0), LogitScale) and built["trades"].student is None
    (term,) = arm_phases(both, "ltd-trades")[0].objective.terms
    assert (term.teacher, term.options["beta"], term.options["teacher_temperature"]) == ("logits", 3.0, 1.0)
    assert [t.target for t in arm_phases(both, "trades")[0].objective.terms] == ["label"]
    baseline = AdversarialConfig(method="pgd-at", arms=["pgd-at", "standard"])
    assert {n: a.role for n, a in arms(baseline, None).items()} == {"pgd-at": "variant", "standard": "scratch"}
    assert compare(baseline, arms(baseline, None)) == [("pgd-at", "standard")]


@pytest.mark.parametrize(("override", "field"), [("train_attack.epsilon=-0.1", "train_attack.epsilon"),
                                                 ("ltd.teacher_temperature=0", "ltd.teacher_temperature"),
                                                 ("ltd.student_temperature=-2", "ltd.student_temperature"),
                                                 ("train_attack.steps=0", "train_attack.steps"),
                                                 ("defensive.temperature=0", "defensive.temperature"),
                                                 ("arms=[pgd-at]", "own arm")])
def test_bad_settings_are_refused_before_training(tmp_path: Path, data_home: Path, override: str, field: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["distill", "--recipe", "ltd", "--out", str(out), "--set", override]) == 2
    assert field in capsys.readouterr().err
    assert not out.exists() and not data_home.exists()


def _metrics(run: Path, arm: str) -> list[dict]:
    return [json.loads(line) for line in (run / f"{arm}-seed0" / "metrics.jsonl").read_text().splitlines()]


def test_tiny_ltd_study_writes_results_report_and_checks(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "ltd", "--out", str(out), *TINY_ARGS]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["headline"] == "robust_accuracy"
    assert {n: a["role"] for n, a in results["arms"].items()} == {
        "ltd": "variant", "pgd-at": "scratch", "ltd-trades": "variant", "trades": "scratch",
        "defensive-distillation": "baseline", "standard": "scratch"}
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == PAIRS
    assert {c["metric"] for c in results["comparisons"]} == {"robust_accuracy"}
    assert "transfer_accuracy" not in results["teacher"]["test"]  # scored before any arm named it the source
    # the clean teacher is gated on clean accuracy (its robust accuracy is not what it teaches)
    assert results["teacher"]["gate"][0]["detail"].startswith("teacher accuracy")
    assert [c["name"] for c in results["teacher"]["gate"]] == ["lead", "confidence"]  # a classifier's checks
    assert (out / "plots" / "reliability.png").is_file()
    for arm in results["arms"].values():
        seed = arm["seeds"]["0"]
        assert set(seed) >= {*COLUMNS, *(sweep_key(e) for e in (0.0, 0.1, 0.15))}
        assert seed[sweep_key(0.0)] == pytest.approx(seed["accuracy"])
        assert seed[sweep_key(0.1)] == seed["pgd_accuracy"]
        assert seed["robust_accuracy"] <= min(seed[k] for k in COLUMNS if k != "transfer_accuracy") + 1e-6
    assert any("loss/ltd" in r for r in _metrics(out, "ltd"))
    assert any("loss/trades" in r for r in _metrics(out, "trades"))
    assert any("loss/ltd-trades" in r for r in _metrics(out, "ltd-trades"))
    assert any("loss/soft-ce" in r for r in _metrics(out, "defensive-distillation"))
    assert any("loss/ce" in r for r in _metrics(out, "defensive-distillation-teacher"))  # its own T = 100 teacher
    report = (out / "report.md").read_text()
    for needle in ("**ltd**", "**pgd-at**", "**defensive-distillation**", "## Attacks and gradient-masking checks",
                   "i_scaled_attack_collapse", "iii_transfer_not_below_white_box", "τ_S = 2", "T = 100", "**trades**",
                   "DLR"):
        assert needle in report
    assert report.index("## Attacks and gradient-masking checks") < report.index("## Reproduce")
    for plot in ("epsilon_sweep.png", "headline.png"):
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    # `kd-vision eval`: the LTD student reloads as LogitScale(student, 1/τ_S), the DD student bare (T = 1)
    method, config = load_recipe("ltd", [f"{k}={v}" for k, v in TINY.items()], domain="vision")
    plan = method.build(config)
    study = plan.study(RunContext(out=out, device="cpu"))
    assert isinstance(study.load_student(out, "ltd", 0), LogitScale)
    assert not isinstance(study.load_student(out, "defensive-distillation", 0), LogitScale)
    scores = plan.evaluate(out, "cpu")
    assert scores["ltd/seed0/robust_accuracy"] == pytest.approx(results["arms"]["ltd"]["seeds"]["0"]["robust_accuracy"])


@pytest.mark.parametrize(("recipe", "pair"), [("pgd-at", ("pgd-at", "standard")),
                                              ("defensive-distillation", ("defensive-distillation", "standard"))])
def test_tiny_baseline_recipes_run(tmp_path: Path, data_home: Path, recipe: str, pair: tuple[str, str]) -> None:
    out = tmp_path / recipe
    assert main(["distill", "--recipe", recipe, "--out", str(out), *TINY_ARGS]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == list(pair) and results["arms"][recipe]["role"] == "variant"
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [pair]
    assert "gradient-masking checks" in (out / "report.md").read_text()
