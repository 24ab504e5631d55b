"""Hand-computed checks for kd_core.losses: every expected value comes from the definition, in plain math."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.losses import (
    LOSSES,
    HiddenMSE,
    attention_loss,
    balanced_kl,
    cross_entropy,
    hidden_mse,
    info_nce,
    kl_divergence,
    l1,
    logit_mse,
    soft_cross_entropy,
)
from torch import nn


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1.3e-6) -> None:
    """``torch.testing.assert_close`` without its slow first import (it pulls in torch.distributed)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{actual} != {expected}"

LN = math.log


def softmax(row: list[float], t: float = 1.0) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    """KL(p ‖ q) = Σ p log(p/q)."""
    return sum(pi * LN(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def entropy(p: list[float]) -> float:
    return -sum(pi * LN(pi) for pi in p if pi > 0)


# Two samples, two classes, T = 2 (hand example): tempered logits are the logits halved.
STUDENT = [[1.0, 0.0], [0.0, 0.0]]
TEACHER = [[0.0, 2.0], [3.0, -1.0]]
T = 2.0


def _pairs():
    return torch.tensor(STUDENT), torch.tensor(TEACHER)


def test_forward_kl_two_classes_with_temperature_and_t2():
    # row 0: p_s = softmax([0.5, 0]) = [σ(0.5), σ(-0.5)] = [0.62246, 0.37754]
    #        p_t = softmax([0, 1])   = [σ(-1), σ(1)]     = [0.26894, 0.73106]
    #        KL(p_t ‖ p_s) = 0.26894·ln(0.26894/0.62246) + 0.73106·ln(0.73106/0.37754)
    #                      = 0.26894·(−0.83916) + 0.73106·0.66081 = −0.22569 + 0.48309 = 0.25740
    # row 1: p_s = [0.5, 0.5], p_t = softmax([1.5, -0.5]) = [σ(2), σ(-2)] = [0.88080, 0.11920]
    #        KL = 0.88080·ln(1.76159) + 0.11920·ln(0.23841) = 0.49872 − 0.17091 = 0.32781
    # batchmean × T² = 4 · (0.25740 + 0.32781) / 2 = 1.17043
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    row0 = sig(-1) * LN(sig(-1) / sig(0.5)) + sig(1) * LN(sig(1) / sig(-0.5))
    row1 = sig(2) * LN(sig(2) / 0.5) + sig(-2) * LN(sig(-2) / 0.5)
    assert row0 == pytest.approx(0.25740, abs=1e-5)
    assert row1 == pytest.approx(0.32781, abs=1e-5)
    expected = T * T * (row0 + row1) / 2
    s, t = _pairs()
    assert kl_divergence(s, t, temperature=T).item() == pytest.approx(expected, rel=1e-5)
    assert kl_divergence(s, t, temperature=T, direction="forward").item() == pytest.approx(1.17043, abs=1e-4)


def test_reverse_kl_and_t2_scale_off():
    rows_rev = [kl(softmax(s, T), softmax(t, T)) for s, t in zip(STUDENT, TEACHER)]
    rows_fwd = [kl(softmax(t, T), softmax(s, T)) for s, t in zip(STUDENT, TEACHER)]
    s, t = _pairs()
    assert kl_divergence(s, t, T, direction="reverse").item() == pytest.approx(4 * sum(rows_rev) / 2, rel=1e-5)
    # without the T² factor the value is exactly a quarter at T = 2
    assert kl_divergence(s, t, T, t2_scale=False).item() == pytest.approx(sum(rows_fwd) / 2, rel=1e-5)
    assert kl_divergence(s, t, T, direction="reverse", t2_scale=False).item() == pytest.approx(
        sum(rows_rev) / 2, rel=1e-5)
    # forward and reverse differ on this example (KL is not symmetric)
    assert abs(sum(rows_rev) - sum(rows_fwd)) > 1e-3


def test_kl_reductions_and_mask_on_sequences():
    s = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # [B=1, L=2, C=2]
    t = torch.tensor([[[0.0, 2.0], [3.0, -1.0]]])
    rows = [kl(softmax(b, 1.0), softmax(a, 1.0)) for a, b in zip(STUDENT, TEACHER)]
    assert kl_divergence(s, t, reduction="sum").item() == pytest.approx(sum(rows), rel=1e-5)
    none = kl_divergence(s, t, reduction="none")
    assert none.shape == (1, 2)
    assert none[0, 0].item() == pytest.approx(rows[0], rel=1e-5)
    mask = torch.tensor([[1, 0]])
    # masked mean: only position 0 counts, divided by the one unmasked position
    assert kl_divergence(s, t, mask=mask).item() == pytest.approx(rows[0], rel=1e-5)


def test_identical_distributions_give_zero_kl():
    x = torch.randn(4, 5)
    assert kl_divergence(x, x.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)
    # shifting all logits by a constant leaves the distribution unchanged
    assert kl_divergence(x, x + 7.0, temperature=0.5).item() == pytest.approx(0.0, abs=1e-5)


def test_kl_gradient_matches_analytic_form():
    # d/dz_s of T²·KL(p_t ‖ p_s) = T·(p_s − p_t) per sample, averaged over the batch (÷ B)
    torch.manual_seed(0)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4)
    temperature = 2.5
    kl_divergence(s, t, temperature).backward()
    p_s = torch.softmax(s.detach() / temperature, -1)
    p_t = torch.softmax(t / temperature, -1)
    expected = temperature * (p_s - p_t) / 3
    assert_close(s.grad, expected, atol=1e-6, rtol=1e-5)


def test_kl_gradcheck_float64():
    # the losses compute in float32 (``.float()``), so finite differences need a coarser step
    torch.manual_seed(1)
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    for direction in ("forward", "reverse"):
        assert torch.autograd.gradcheck(lambda a, b, d=direction: kl_divergence(a, b, 2.0, direction=d),
                                        (s, t), eps=1e-3, atol=1e-3, rtol=1e-2)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    expected = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER):
        p_s, p_t = softmax(s_row, T), softmax(t_row, T)
        ce = -sum(a * LN(b) for a, b in zip(p_t, p_s))
        assert ce == pytest.approx(kl(p_t, p_s) + entropy(p_t))
        expected += T * T * ce / 2
    s, t = _pairs()
    value = soft_cross_entropy(s, t, T).item()
    assert value == pytest.approx(expected, rel=1e-5)
    teacher_entropy = sum(entropy(softmax(r, T)) for r in TEACHER) / 2
    assert value == pytest.approx(kl_divergence(s, t, T).item() + T * T * teacher_entropy, rel=1e-5)
    assert soft_cross_entropy(s, t, T, t2_scale=False).item() == pytest.approx(expected / 4, rel=1e-5)


def test_logit_mse_with_scale():
    s = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[2.0, 2.0]])
    # scale 0.5: target [1, 1]; ((1−1)² + (2−1)²) / 2 = 0.5
    assert logit_mse(s, t, scale=0.5).item() == pytest.approx(0.5)
    # scale 1: ((1−2)² + 0) / 2 = 0.5 as well; scale 0: (1 + 4) / 2 = 2.5
    assert logit_mse(s, t).item() == pytest.approx(0.5)
    assert logit_mse(s, t, scale=0.0).item() == pytest.approx(2.5)


def test_hidden_mse_without_and_with_projection():
    s = torch.tensor([[1.0, 2.0]])
    t3 = torch.tensor([[1.0, 0.0, 3.0]])
    t2 = torch.tensor([[0.0, 4.0]])
    # no projection: ((1−0)² + (2−4)²) / 2 = 2.5
    assert hidden_mse(s, t2).item() == pytest.approx(2.5)
    proj = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    # W·[1, 2] = [1, 2, 3]; vs [1, 0, 3]: (0 + 4 + 0) / 3
    assert hidden_mse(s, t3, proj).item() == pytest.approx(4 / 3)
    with pytest.raises(ConfigError, match="teacher"):
        hidden_mse(s, t3)


def test_hidden_mse_module_projections_get_gradients():
    torch.manual_seed(0)
    linear = HiddenMSE(4, 6)
    assert isinstance(linear.projection, nn.Linear)
    loss = linear(torch.randn(2, 5, 4), torch.randn(2, 5, 6))
    loss.backward()
    assert linear.projection.weight.grad is not None
    assert linear.projection.weight.grad.abs().sum() > 0

    conv = HiddenMSE(3, 8, channels_first=True)
    assert isinstance(conv.projection, nn.Conv2d)
    assert conv.projection.kernel_size == (1, 1)
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = conv(student, torch.randn(2, 8, 4, 4))
    loss.backward()
    assert conv.projection.weight.grad is not None and conv.projection.weight.grad.abs().sum() > 0
    assert student.grad is not None and student.grad.abs().sum() > 0
    # 1×1 conv equals the per-pixel linear map with the same weights
    w = conv.projection.weight.detach()[:, :, 0, 0]
    x = torch.randn(1, 3, 2, 2)
    assert_close(conv.projection(x), torch.einsum("oc,bchw->bohw", w, x))
    for bad in (0, -2, 2.5):
        with pytest.raises(ConfigError, match="student_dim"):
            HiddenMSE(bad, 4)  # type: ignore[arg-type]


def test_balanced_kl_uncertain_student_weights_reverse_term():
    s_row, t_row = [0.0, 0.0], [3.0, 0.0]  # the student is uniform, the teacher confident
    temperature, k = 1.0, 5.0
    p_s, p_t = softmax(s_row, temperature), softmax(t_row, temperature)
    gap = entropy(p_s) - entropy(p_t)  # ln 2 − H(σ(3)) > 0
    assert gap > 0
    b = 1 / (1 + math.exp(-k * gap))
    assert b > 0.5  # the reverse (mode-seeking) term dominates
    fwd, rev = kl(p_t, p_s), kl(p_s, p_t)
    expected = (1 - b) * fwd + b * rev
    s = torch.tensor([s_row], requires_grad=True)
    t = torch.tensor([t_row])
    value = balanced_kl(s, t, temperature=temperature, sharpness=k)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # the mix sits closer to the reverse KL than to the forward one
    assert abs(value.item() - rev) < abs(value.item() - fwd)

    # weights are detached: the gradient is that of the mix with b held constant
    value.backward()
    s2 = torch.tensor([s_row], requires_grad=True)
    log_s = torch.log_softmax(s2 / temperature, -1)
    log_t = torch.log_softmax(t / temperature, -1)
    manual = (1 - b) * (log_t.exp() * (log_t - log_s)).sum() + b * (log_s.exp() * (log_s - log_t)).sum()
    manual.backward()
    assert_close(s.grad, s2.grad, atol=1e-6, rtol=1e-5)

    # an over-confident student (teacher uniform) gets the forward term instead
    over = balanced_kl(torch.tensor([t_row]), torch.tensor([s_row]), temperature=temperature, sharpness=k)
    b2 = 1 / (1 + math.exp(k * gap))
    expected2 = (1 - b2) * kl(p_s, p_t) + b2 * kl(p_t, p_s)
    assert b2 < 0.5
    assert over.item() == pytest.approx(expected2, rel=1e-5)
    # T² scaling
    t2 = balanced_kl(torch.tensor([s_row]), t, temperature=2.0, sharpness=k)
    t2_off = balanced_kl(torch.tensor([s_row]), t, temperature=2.0, sharpness=k, t2_scale=False)
    assert t2.item() == pytest.approx(4 * t2_off.item(), rel=1e-6)


def test_attention_loss_masks_very_negative_entries():
    s = torch.tensor([[0.5, -1e4, 0.2]])
    t = torch.tensor([[0.1, -1e4, 0.2]])
    # masked entries become 0 in both: ((0.4)² + 0 + 0) / 3
    assert attention_loss(s, t).item() == pytest.approx(0.16 / 3, rel=1e-5)
    # -inf masks (as produced by masked_fill) are zeroed too: finite loss, finite gradients
    s_inf = torch.tensor([[0.5, float("-inf"), 0.2]], requires_grad=True)
    t_inf = torch.tensor([[0.1, float("-inf"), 0.2]])
    loss = attention_loss(s_inf, t_inf)
    assert loss.item() == pytest.approx(0.16 / 3, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s_inf.grad).all()
    assert s_inf.grad[0, 1].item() == 0.0
    # unmasked: plain MSE
    assert attention_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(2.5)


def test_info_nce_aligned_pairs_beat_shuffled():
    # two orthogonal unit vectors, aligned: logits = [[1/τ, 0], [0, 1/τ]]; loss = ln(1 + e^{−1/τ})
    e = torch.eye(2)
    assert info_nce(e, e.clone(), temperature=0.1).item() == pytest.approx(LN(1 + math.exp(-10)), abs=1e-6)
    # swapped: each row's positive has logit 0 and its negative 1/τ: ln(1 + e^{1/τ})
    assert info_nce(e, e.flip(0), temperature=0.1).item() == pytest.approx(LN(1 + math.exp(10)), rel=1e-4)
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    aligned = info_nce(x, x.clone()).item()
    shuffled = info_nce(x, x[torch.roll(torch.arange(8), 1)]).item()
    assert aligned < shuffled
    with pytest.raises(ConfigError, match="temperature"):
        info_nce(x, x, temperature=0)


def test_l1_mean_absolute_error():
    # (|1−0| + |−2−1| + |0.5−0.5|) / 3 = 4/3
    assert l1(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])).item() == pytest.approx(4 / 3)
    with pytest.raises(ConfigError, match="features"):
        l1(torch.zeros(2, 3), torch.zeros(2, 4))


def test_cross_entropy_on_sequences():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])  # [B=1, L=3, C=3]
    target = torch.tensor([[0, 2, -100]])
    # position 0: −ln(e²/(e²+2)); position 1: −ln(1/(e+2)); position 2 ignored
    p0 = -LN(math.exp(2) / (math.exp(2) + 2))
    p1 = -LN(1 / (math.e + 2))
    assert cross_entropy(logits, target).item() == pytest.approx((p0 + p1) / 2, rel=1e-5)
    none = cross_entropy(logits, target, reduction="none")
    assert none.shape == (1, 3)
    assert none[0, 0].item() == pytest.approx(p0, rel=1e-5)
    assert none[0, 2].item() == 0.0
    assert cross_entropy(logits, target, reduction="sum").item() == pytest.approx(p0 + p1, rel=1e-5)
    with pytest.raises(ConfigError, match="target"):
        cross_entropy(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="reduction"):
        cross_entropy(logits, target, reduction="avg")  # type: ignore[arg-type]


@pytest.mark.parametrize("temperature", [0, -1, float("nan"), float("inf"), "x", None, True])
@pytest.mark.parametrize("loss", [kl_divergence, balanced_kl, soft_cross_entropy])
def test_bad_temperature_is_a_config_error(loss, temperature):
    s, t = _pairs()
    with pytest.raises(ConfigError, match="temperature") as info:
        loss(s, t, temperature)
    assert info.value.argument == "temperature"
    assert "> 0" in str(info.value)


@pytest.mark.parametrize("loss", [kl_divergence, balanced_kl, soft_cross_entropy, logit_mse])
def test_class_mismatch_names_teacher_and_both_counts(loss):
    with pytest.raises(ConfigError) as info:
        loss(torch.zeros(2, 10), torch.zeros(2, 100))
    message = str(info.value)
    assert info.value.argument == "teacher"
    assert "teacher" in message and "10 classes" in message and "100 classes" in message


def test_shape_mismatch_beyond_classes():
    with pytest.raises(ConfigError, match="shape"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(4, 3))


def test_bad_direction_and_reduction():
    s, t = _pairs()
    with pytest.raises(ConfigError, match="direction") as info:
        kl_divergence(s, t, direction="backward")  # type: ignore[arg-type]
    assert "backward" in str(info.value)
    for loss in (kl_divergence, soft_cross_entropy, balanced_kl):
        with pytest.raises(ConfigError, match="reduction"):
            loss(s, t, reduction="batchmean")  # type: ignore[call-arg]


def test_registry_names_every_loss():
    assert LOSSES["kl_divergence"] is kl_divergence
    assert set(LOSSES) >= {"kl_divergence", "balanced_kl", "soft_cross_entropy", "cross_entropy", "logit_mse",
                           "hidden_mse", "attention_loss", "info_nce", "l1"}


@pytest.mark.parametrize("sharpness", [-1.0, float("nan"), float("inf"), "5", True])
def test_balanced_kl_rejects_bad_sharpness(sharpness):
    with pytest.raises(ConfigError) as caught:
        balanced_kl(torch.zeros(2, 3), torch.zeros(2, 3), sharpness=sharpness)
    assert caught.value.argument == "sharpness"
