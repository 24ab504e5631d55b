"""The gates a study checks before its claims are read: is this teacher worth distilling, and does plain KD help?

A distillation claim says what a student gains from a teacher's outputs. Two kinds of teacher make such a claim
untestable, and a study report flags both before any verdict (the *teacher gate*):

- **no lead**: the teacher does not beat the students trained from scratch (mean over seeds) on the headline
  metric, so it has nothing to teach that the labels do not;
- **under-confident**: on the test split its mean top-class probability lies more than ``margin`` below its
  accuracy, the mark of a barely trained (or over-regularised) network whose soft targets are flatter than its
  accuracy warrants. Retrain it to convergence, early-stopped on val NLL, before judging a KD method on it.

A claim about a KD *variant* (annealing, curricula, balanced divergences) is a claim about what it adds to KD. In
a regime where plain KD does not beat the scratch twin, no variant can show that, so the *KD gate*
(:func:`kd_check`) fails unless every plain-KD-against-scratch comparison is held: change the regime (epochs, α,
data size, student width) before comparing variants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from kd_core.metrics import expected_calibration_error
from kd_core.stats import PairedComparison

__all__ = ["UNDER_CONFIDENCE_MARGIN", "GateCheck", "gate_sentence", "kd_check", "kd_gate_sentence", "plain_kd",
           "teacher_checks"]

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


def plain_kd(comparisons: Sequence[PairedComparison], roles: Mapping[str, str]) -> list[PairedComparison]:
    """The comparisons of a ``kd`` arm against a ``scratch`` arm (``roles``: arm name → role)."""
    return [c for c in comparisons if roles.get(c.a) == "kd" and roles.get(c.b) == "scratch"]


def kd_check(comparisons: Sequence[PairedComparison], roles: Mapping[str, str]) -> GateCheck | None:
    """The KD gate: passed when every comparison of a ``kd`` arm against a ``scratch`` arm (``roles``: arm name →
    role) is *held*; None when the study has no such comparison."""
    plain = plain_kd(comparisons, roles)
    if not plain:
        return None

    def fact(c: PairedComparison) -> str:
        spread = "n = 1" if c.low is None or c.high is None else f"95 % CI {c.low:+.2f} to {c.high:+.2f}"
        return f"{c.a} − {c.b} {c.mean:+.2f} in {c.metric} ({spread}, {c.n} seeds): {c.verdict}"

    return GateCheck("kd-beats-scratch", all(c.verdict == "held" for c in plain), "; ".join(map(fact, plain)))


def kd_gate_sentence(check: GateCheck | None) -> str:
    """One sentence for a report: whether plain KD beats scratch here, and what a failure means for the verdicts."""
    if check is None:
        return "not judged (no plain-KD arm against a scratch arm)."
    if check.passed:
        return f"passed ({check.detail})."
    return (f"**failed**: plain KD does not reliably beat scratch in this regime ({check.detail}), so it cannot show "
            "what a KD variant adds; change the regime (epochs, α, data size, student width) before comparing "
            "variants. The comparisons of KD variants below are descriptive, not evidence for or against them.")
