"""The gates by hand: a teacher no better than scratch and an under-confident (planted, under-trained) teacher are
flagged, a sound one passes, the report sentence says which check failed; plain KD that does not beat scratch by a
held interval fails the KD gate."""

from __future__ import annotations

import math

import torch
from kd_core.gates import gate_sentence, kd_check, kd_gate_sentence, teacher_checks
from kd_core.stats import PairedComparison, paired_difference


def _outputs(confidence: float, n: int = 10, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose top class (always the label) has softmax probability ``confidence``."""
    rest = (1 - confidence) / (classes - 1)
    logits = torch.full((n, classes), math.log(rest))
    logits[:, 0] = math.log(confidence)
    return logits, torch.zeros(n, dtype=torch.long)


def test_a_sound_teacher_passes() -> None:
    checks = teacher_checks(0.95, [0.90, 0.92], outputs=_outputs(0.97), metric="accuracy")
    assert [(c.name, c.passed) for c in checks] == [("lead", True), ("confidence", True)]
    text = gate_sentence(checks)
    assert text.startswith("passed") and "0.91 (mean of 2 seeds)" in text and "mean confidence 0.970" in text


def test_a_teacher_no_better_than_scratch_is_flagged() -> None:
    checks = teacher_checks(0.90, [0.91, 0.93])
    assert [(c.name, c.passed) for c in checks] == [("lead", False)]
    assert gate_sentence(checks).startswith("**failed**: the teacher is no better than a student trained from scratch")
    # lower is better (an error rate): 0.10 against scratch's 0.12 is a lead
    assert teacher_checks(0.10, [0.12], higher_is_better=False)[0].passed


def test_an_under_trained_under_confident_teacher_is_flagged() -> None:
    # accuracy 1.0 with confidence 0.40: soft targets far flatter than the accuracy warrants
    check = teacher_checks(1.0, [], outputs=_outputs(0.40))[0]
    assert check.name == "confidence" and not check.passed and "0.400 against accuracy 1.000" in check.detail
    assert "under-confident" in gate_sentence([check])
    assert teacher_checks(1.0, [], outputs=_outputs(0.96))[0].passed  # within the 0.05 margin
    assert gate_sentence([]).startswith("not judged")


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well-separated Gaussian blobs in 2-D (a task any linear classifier solves)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    return centres[y] + torch.randn(n, 2, generator=g), y


def _trained_teacher(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear teacher trained ``steps`` SGD steps from zero weights; its test logits and labels."""
    x, y = _blobs(300, 0)
    model = torch.nn.Linear(2, 3)
    torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    test_x, test_y = _blobs(200, 1)
    with torch.no_grad():
        return model(test_x), test_y


def test_a_planted_under_trained_teacher_is_flagged_and_the_converged_one_passes() -> None:
    # after 3 small steps the teacher already ranks the blobs right (accuracy ~1) but its softmax is still nearly
    # uniform: the gate flags it; trained to convergence the same teacher passes
    logits, labels = _trained_teacher(3)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9
    (early,) = teacher_checks(100 * accuracy, [], outputs=(logits, labels))
    assert early.name == "confidence" and not early.passed
    (converged,) = teacher_checks(100.0, [], outputs=_trained_teacher(2000))
    assert converged.passed


def _comparison(kd: list[float], scratch: list[float]) -> PairedComparison:
    return paired_difference(kd, scratch, a_name="kd", b_name="scratch", metric="accuracy")


def test_the_kd_gate_passes_only_when_plain_kd_beats_scratch_by_a_held_interval() -> None:
    roles = {"kd": "kd", "scratch": "scratch", "akd": "variant"}
    held = _comparison([91.0, 92.0, 91.5], [90.0, 90.5, 90.2])
    check = kd_check([held], roles)
    assert check is not None and check.passed and check.name == "kd-beats-scratch"
    assert kd_gate_sentence(check).startswith("passed (kd − scratch +1.27 in accuracy (95 % CI")
    # KD loses to scratch (not held) and a tie within the noise (inconclusive) both fail the gate
    for kd, scratch in (([89.0, 89.5, 89.2], [90.0, 90.5, 90.2]), ([90.0, 91.0, 90.0], [90.5, 90.0, 90.6])):
        check = kd_check([_comparison(kd, scratch)], roles)
        assert check is not None and not check.passed
        assert kd_gate_sentence(check).startswith("**failed**: plain KD does not reliably beat scratch")
    # only kd-against-scratch pairs count; a study without one is not judged
    variant = paired_difference([1.0, 2.0], [0.0, 0.0], a_name="akd", b_name="kd", metric="accuracy")
    assert kd_check([variant], roles) is None
    assert kd_gate_sentence(None).startswith("not judged")
