"""The teacher gate a study checks before its claims are read: is this teacher worth distilling?

A distillation claim says what a student gains from a teacher's outputs. Two kinds of teacher make such a claim
untestable, and a study report flags both before any verdict:

- **no lead**: the teacher does not beat the students trained from scratch (mean over seeds) on the headline
  metric, so it has nothing to teach that the labels do not;
- **under-confident**: on the test split its mean top-class probability lies more than ``margin`` below its
  accuracy, the mark of a barely trained (or over-regularised) network whose soft targets are flatter than its
  accuracy warrants. Retrain it to convergence, early-stopped on val NLL, before judging a KD method on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kd_core.metrics import expected_calibration_error

__all__ = ["UNDER_CONFIDENCE_MARGIN", "GateCheck", "gate_sentence", "teacher_checks"]

#: How far (probability) the teacher's mean confidence may lie below its accuracy before it is flagged.
UNDER_CONFIDENCE_MARGIN = 0.05


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: its name, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


def teacher_checks(teacher_score: float, scratch_scores: Sequence[float], higher_is_better: bool = True,
                   outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
                   margin: float = UNDER_CONFIDENCE_MARGIN, metric: str = "score") -> list[GateCheck]:
    """The gate's checks (see the module doc). ``teacher_score``: the teacher's test headline; ``scratch_scores``:
    the scratch students' (one per seed; no check when empty); ``outputs``: the teacher's test ``(logits,
    labels)`` for a classification task (no confidence check without them)."""
    checks = []
    finite = [s for s in scratch_scores if math.isfinite(s)]
    if finite and math.isfinite(teacher_score):
        scratch = sum(finite) / len(finite)
        lead = (teacher_score - scratch) * (1 if higher_is_better else -1)
        checks.append(GateCheck("lead", lead > 0, f"teacher {metric} {teacher_score:.4g} against scratch's "
                                                  f"{scratch:.4g} (mean of {len(finite)} seeds)"))
    if outputs is not None:
        bins = expected_calibration_error(*outputs)
        total = sum(bins.bin_count)
        accuracy = sum(n * a for n, a in zip(bins.bin_count, bins.bin_accuracy, strict=True)) / total
        mean_confidence = sum(n * c for n, c in zip(bins.bin_count, bins.bin_confidence, strict=True)) / total
        checks.append(GateCheck("confidence", mean_confidence >= accuracy - margin,
                                f"mean confidence {mean_confidence:.3f} against accuracy {accuracy:.3f}"))
    return checks


def gate_sentence(checks: Sequence[GateCheck]) -> str:
    """One sentence for a report: passed (with the numbers), or failed and why, or not judged."""
    if not checks:
        return "not judged (no scratch arm and no class outputs)."
    facts = "; ".join(c.detail for c in checks)
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f"passed ({facts})."
    why = {"lead": "the teacher is no better than a student trained from scratch, so it has nothing to teach",
           "confidence": "the teacher is under-confident (barely trained or over-regularised): retrain it to "
                         "convergence, early-stopped on val NLL"}
    return f"**failed**: {'; '.join(why[c.name] for c in failed)} ({facts}). The verdicts below test nothing."
