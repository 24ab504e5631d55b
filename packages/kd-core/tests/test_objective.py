"""The objective: weighted sums of named terms, schedules, validation before any forward pass."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import ConfigError, TapError
from kd_core.losses import HiddenMSE, cross_entropy, kl_divergence, logit_mse
from kd_core.objective import Objective, ObjectiveResult, Term
from kd_core.schedules import Linear, Step
from torch import nn


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1.3e-6) -> None:
    """``torch.testing.assert_close`` without its slow first import (it pulls in torch.distributed)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{actual} != {expected}"

LN = math.log

# one sample, two classes: student [0, 0] (uniform), teacher [ln 3, 0] (p_t = [3/4, 1/4]), label 0
STUDENT = {"logits": torch.tensor([[0.0, 0.0]])}
TEACHER = {"logits": torch.tensor([[LN(3.0), 0.0]])}
BATCH = {"label": torch.tensor([0])}
# KL(p_t ‖ p_s) at T = 1: 3/4·ln(3/4 / 1/2) + 1/4·ln(1/4 / 1/2) = 3/4·ln 1.5 − 1/4·ln 2
KD = 0.75 * LN(1.5) - 0.25 * LN(2.0)
CE = LN(2.0)  # −ln(1/2)


def _hinton(weight_kd=0.9, weight_ce=0.1, **kd_options):
    kd_options.setdefault("temperature", 1.0)
    return Objective(
        Term("kd", kl_divergence, student="logits", teacher="logits", weight=weight_kd, **kd_options),
        Term("ce", cross_entropy, student="logits", target="label", weight=weight_ce),
    )


def test_weighted_total_is_the_hand_sum_of_the_parts():
    result = _hinton()(STUDENT, TEACHER, BATCH)
    assert isinstance(result, ObjectiveResult)
    assert set(result.terms) == {"kd", "ce"}
    assert result.terms["kd"].item() == pytest.approx(KD, rel=1e-5)
    assert result.terms["ce"].item() == pytest.approx(CE, rel=1e-5)
    assert result.total.item() == pytest.approx(0.9 * KD + 0.1 * CE, rel=1e-5)
    logged = result.log_values()
    assert logged == pytest.approx({"loss/total": 0.9 * KD + 0.1 * CE, "loss/kd": KD, "loss/ce": CE}, rel=1e-5)
    assert all(isinstance(v, float) for v in logged.values())
    assert set(result.log_values("val/")) == {"val/total", "val/kd", "val/ce"}


def test_total_backpropagates_into_the_student():
    logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    _hinton()({"logits": logits}, TEACHER, BATCH).total.backward()
    # d/dz KL = p_s − p_t = [1/2 − 3/4, 1/2 − 1/4]; d/dz CE = p_s − onehot = [−1/2, 1/2]
    expected = 0.9 * torch.tensor([[-0.25, 0.25]]) + 0.1 * torch.tensor([[-0.5, 0.5]])
    assert_close(logits.grad, expected)


def test_weight_schedule_changes_the_total_with_progress():
    objective = _hinton(weight_kd=Linear(0.0, 1.0), weight_ce=1.0)
    assert objective(STUDENT, TEACHER, BATCH, progress=0.0).total.item() == pytest.approx(CE, rel=1e-5)
    assert objective(STUDENT, TEACHER, BATCH, progress=0.5).total.item() == pytest.approx(0.5 * KD + CE, rel=1e-5)
    assert objective(STUDENT, TEACHER, BATCH, progress=1.0).total.item() == pytest.approx(KD + CE, rel=1e-5)
    # the parts are reported unweighted, even when a weight is 0
    assert objective(STUDENT, TEACHER, BATCH, progress=0.0).terms["kd"].item() == pytest.approx(KD, rel=1e-5)


def test_temperature_schedule_is_evaluated_at_progress():
    objective = _hinton(temperature=Linear(1.0, 2.0))
    at_end = objective(STUDENT, TEACHER, BATCH, progress=1.0).terms["kd"].item()
    # T = 2: p_t = softmax([ln3/2, 0]) = [√3/(√3+1), 1/(√3+1)], p_s uniform; × T² = 4
    r3 = math.sqrt(3.0)
    p = [r3 / (r3 + 1), 1 / (r3 + 1)]
    expected = 4 * sum(pi * LN(pi / 0.5) for pi in p)
    assert at_end == pytest.approx(expected, rel=1e-5)
    assert objective(STUDENT, TEACHER, BATCH, progress=0.0).terms["kd"].item() == pytest.approx(KD, rel=1e-5)


def test_all_zero_weights_give_a_zero_total():
    result = _hinton(weight_kd=0.0, weight_ce=0.0)(STUDENT, TEACHER, BATCH)
    assert result.total.item() == 0.0
    assert result.terms["ce"].item() == pytest.approx(CE, rel=1e-5)


@pytest.mark.parametrize("temperature", [Linear(4.0, 0.0), Linear(2.0, -1.0), Step([1.0, -1.0, 1.0], [0.6, 0.7]),
                                         Step([1.0, 0.0, 1.0], [0.601, 0.602]), 0.0, -2.0, "hot"])
def test_temperature_that_reaches_zero_is_rejected_at_construction(temperature):
    with pytest.raises(ConfigError, match=r"kd\.temperature") as info:
        Term("kd", kl_divergence, teacher="logits", temperature=temperature)
    assert info.value.argument == "kd.temperature"


def test_term_argument_errors():
    with pytest.raises(ConfigError, match="unique term names") as info:
        Objective(Term("kd", kl_divergence, teacher="logits"), Term("kd", logit_mse, teacher="logits"))
    assert "kd" in str(info.value)
    with pytest.raises(ConfigError, match="at least one Term"):
        Objective()
    with pytest.raises(ConfigError, match=r"x\.target"):
        Term("x", kl_divergence, teacher="logits", target="label")
    with pytest.raises(ConfigError, match=r"x\.loss"):
        Term("x", "kl_divergence", teacher="logits")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        Term("", kl_divergence)
    with pytest.raises(ConfigError, match=r"x\.weight"):
        Term("x", kl_divergence, teacher="logits", weight="0.5")  # type: ignore[arg-type]


def test_missing_batch_target_names_the_term():
    with pytest.raises(ConfigError, match=r"ce\.target") as info:
        _hinton()(STUDENT, TEACHER, {"labels": torch.tensor([0])})
    assert "labels" in str(info.value) and "label" in str(info.value)
    with pytest.raises(ConfigError, match=r"kd\.teacher"):
        _hinton()(STUDENT, None, BATCH)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(torch.relu(self.body(x)))


def test_validate_rejects_unknown_taps_before_any_forward_pass():
    student, teacher = _Net(), _Net()
    objective = Objective(Term("kd", kl_divergence, teacher="logits"),
                          Term("hid", HiddenMSE(6, 6), student="bdy", teacher="body"))
    assert objective.student_taps == ["logits", "bdy"]
    assert objective.teacher_taps == ["logits", "body"]
    assert objective.needs_teacher
    with pytest.raises(TapError, match="bdy") as info:
        objective.validate(student, teacher)
    assert "'body'" in str(info.value)  # the nearest name
    assert student.calls == 0 and teacher.calls == 0
    # teacher taps are checked too
    wrong_teacher = Objective(Term("hid", HiddenMSE(6, 6), student="body", teacher="boddy"))
    wrong_teacher.validate(student)  # no teacher model given: nothing to check there
    with pytest.raises(TapError, match="boddy"):
        wrong_teacher.validate(student, teacher)
    Objective(Term("hid", HiddenMSE(6, 6), student="body", teacher="in:head")).validate(student, teacher)
    assert not Objective(Term("ce", cross_entropy, target="label")).needs_teacher


def test_trainable_losses_are_parameters_of_the_objective():
    projection = HiddenMSE(4, 6)
    objective = Objective(Term("kd", kl_divergence, teacher="logits"),
                          Term("hid", projection, student="feat", teacher="feat", weight=0.5))
    params = list(objective.parameters())
    assert len(params) == 1 and params[0] is projection.projection.weight
    s = {"logits": torch.zeros(1, 2), "feat": torch.randn(3, 4)}
    t = {"logits": torch.zeros(1, 2), "feat": torch.randn(3, 6)}
    objective(s, t, {}).total.backward()
    assert projection.projection.weight.grad is not None
    assert projection.projection.weight.grad.abs().sum() > 0
    assert any(k.startswith("trainable.hid.") for k in objective.state_dict())


def test_term_names_with_dots_hold_trainable_losses():
    # layer-map methods (TinyBERT) name terms after layers, e.g. "hidden.3"
    objective = Objective(Term("hidden.3", HiddenMSE(4, 6), student="a", teacher="b"),
                          Term("hidden.4", HiddenMSE(4, 6), student="a", teacher="b"))
    assert len(list(objective.parameters())) == 2
    state = objective.state_dict()
    fresh = Objective(Term("hidden.3", HiddenMSE(4, 6), student="a", teacher="b"),
                      Term("hidden.4", HiddenMSE(4, 6), student="a", teacher="b"))
    fresh.load_state_dict(state)
    for p, q in zip(objective.parameters(), fresh.parameters()):
        assert_close(p, q)
    result = objective({"a": torch.ones(2, 4)}, {"b": torch.zeros(2, 6)}, {})
    assert set(result.terms) == {"hidden.3", "hidden.4"}
    with pytest.raises(ConfigError, match="distinct"):
        Objective(Term("a.b", HiddenMSE(4, 6), teacher="b"), Term("a/b", HiddenMSE(4, 6), teacher="b"))


def test_log_values_reads_extra_scalars_with_the_terms() -> None:
    result = ObjectiveResult(total=torch.tensor(1.5), terms={"kd": torch.tensor(1.0), "ce": torch.tensor(0.5)})
    logged = result.log_values(extra={"finite": torch.tensor(False)})
    assert logged == {"loss/total": 1.5, "loss/kd": 1.0, "loss/ce": 0.5, "finite": 0.0}
    assert result.log_values()["loss/total"] == 1.5 and "finite" not in result.log_values()
