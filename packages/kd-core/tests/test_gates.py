"""The teacher gate by hand: a teacher no better than scratch and an under-confident teacher are flagged, a sound
one passes, and the report sentence says which check failed."""

from __future__ import annotations

import math

import torch
from kd_core.gates import gate_sentence, teacher_checks


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
