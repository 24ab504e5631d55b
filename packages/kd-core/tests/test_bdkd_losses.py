"""``balanced_kl`` against BD-KD's per-sample rule on a hand-computed 2-sample batch (arXiv:2212.12965).

Rule (Amara et al., "BD-KD: Balancing the Divergences for Online Knowledge Distillation", arXiv v1; the
sigmoid weights are our reading of its entropy-gap balancing): Δᵢ = H(p_S) − H(p_T) (detached),
bᵢ = σ(k·Δᵢ) on KL(p_S ‖ p_T), aᵢ = 1 − bᵢ on KL(p_T ‖ p_S), averaged over the batch, times τ².
"""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.losses import balanced_kl

# sample 0: a flat (unsure) student, a confident teacher -> Δ > 0; sample 1: the reverse -> Δ < 0
STUDENT = [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
TEACHER = [[3.0, 0.0, 0.0], [1.0, 0.5, 0.0]]


def softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def entropy(p: list[float]) -> float:
    return -sum(pi * math.log(pi) for pi in p)


def by_hand(t: float, k: float) -> tuple[list[float], list[float]]:
    """Per-sample mixed KL (without τ²) and reverse weights b, in plain floats."""
    rows, weights = [], []
    for s_row, t_row in zip(STUDENT, TEACHER):
        p_s, p_t = softmax(s_row, t), softmax(t_row, t)
        b = 1 / (1 + math.exp(-k * (entropy(p_s) - entropy(p_t))))
        rows.append((1 - b) * kl(p_t, p_s) + b * kl(p_s, p_t))
        weights.append(b)
    return rows, weights


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_two_sample_batch_matches_the_hand_computed_per_sample_mix(t: float) -> None:
    k = 5.0
    rows, b = by_hand(t, k)
    assert b[0] > 0.5 > b[1]  # the unsure student leans on reverse KL, the over-confident one on forward KL
    s, te = torch.tensor(STUDENT), torch.tensor(TEACHER)
    per_sample = balanced_kl(s, te, temperature=t, sharpness=k, reduction="none")
    assert per_sample.tolist() == pytest.approx([t * t * r for r in rows], rel=1e-5)
    assert balanced_kl(s, te, temperature=t, sharpness=k).item() == pytest.approx(t * t * sum(rows) / 2, rel=1e-5)
    # it is a per-sample mix, not one batch-level weight: a single b for both samples gives another value
    b_mean = sum(b) / 2
    pooled = sum((1 - b_mean) * kl(softmax(tr, t), softmax(sr, t)) + b_mean * kl(softmax(sr, t), softmax(tr, t))
                 for sr, tr in zip(STUDENT, TEACHER)) / 2
    assert abs(pooled - sum(rows) / 2) > 1e-3


def test_the_weight_moves_toward_reverse_kl_as_the_student_grows_less_certain() -> None:
    teacher = torch.tensor([[3.0, 0.0, 0.0]])
    weights = []
    for scale in (4.0, 2.0, 1.0, 0.0):  # ever flatter student logits
        student = torch.tensor([[scale, 0.0, 0.0]])
        fwd = balanced_kl(student, teacher, sharpness=0.0).item()  # k = 0: b = 0.5 everywhere
        p_s, p_t = softmax([scale, 0, 0], 1.0), softmax([3.0, 0, 0], 1.0)
        assert fwd == pytest.approx(0.5 * kl(p_t, p_s) + 0.5 * kl(p_s, p_t), rel=1e-5)
        b = 1 / (1 + math.exp(-5.0 * (entropy(p_s) - entropy(p_t))))
        weights.append(b)
    assert weights == sorted(weights) and weights[0] < 0.5 < weights[-1]
    # the hard-switch limit k -> ∞: sample 0 is pure reverse KL, sample 1 pure forward KL
    hard = balanced_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), sharpness=200.0, reduction="none")
    p = [(softmax(s, 1.0), softmax(t, 1.0)) for s, t in zip(STUDENT, TEACHER)]
    assert hard.tolist() == pytest.approx([kl(p[0][0], p[0][1]), kl(p[1][1], p[1][0])], rel=1e-4)


def test_the_weights_carry_no_gradient() -> None:
    k, t = 5.0, 2.0
    _, b = by_hand(t, k)

    def mix(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        log_s, log_t = torch.log_softmax(student / t, -1), torch.log_softmax(teacher / t, -1)
        fwd = (log_t.exp() * (log_t - log_s)).sum(-1)
        rev = (log_s.exp() * (log_s - log_t)).sum(-1)
        return t * t * ((1 - weights) * fwd + weights * rev).mean()

    s, te = torch.tensor(STUDENT, requires_grad=True), torch.tensor(TEACHER, requires_grad=True)
    balanced_kl(s, te, temperature=t, sharpness=k).backward()
    held_s, held_t = torch.tensor(STUDENT, requires_grad=True), torch.tensor(TEACHER, requires_grad=True)
    mix(held_s, held_t, torch.tensor(b)).backward()  # b a constant
    assert torch.allclose(s.grad, held_s.grad, atol=1e-6, rtol=1e-5)
    assert torch.allclose(te.grad, held_t.grad, atol=1e-6, rtol=1e-5)

    # the same mix with the gradient flowing through b differs: the check above can fail
    live_s, live_t = torch.tensor(STUDENT, requires_grad=True), torch.tensor(TEACHER, requires_grad=True)
    log_s, log_t = torch.log_softmax(live_s / t, -1), torch.log_softmax(live_t / t, -1)
    gap = -(log_s.exp() * log_s).sum(-1) + (log_t.exp() * log_t).sum(-1)
    mix(live_s, live_t, torch.sigmoid(k * gap)).backward()
    assert not torch.allclose(s.grad, live_s.grad, atol=1e-4)
