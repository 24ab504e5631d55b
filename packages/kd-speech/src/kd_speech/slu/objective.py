"""FT-KD as a kd-core objective: cross-entropy on the intent plus the L1 logit term.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105): ``L_FT = CE(y, o_s) + (1/B) sum_b ||o_s_b - o_t_b||_1``. The objective reads the
student's and the teacher's ``logits`` taps and the batch's label; with a :class:`~kd_speech.slu.model.
SpeechIntentModel` student, a :class:`~kd_speech.slu.teacher.TranscriptTeacher` and ``forward=lambda m, b: m(b)`` it
runs in kd-core's ``Distiller``. Its value equals :func:`~kd_speech.slu.losses.ft_kd_loss`.

PT-KD is not an objective here: it compares the speech ``[CLS]`` (a forward output, not a module tap) and needs
the MLM loss of the same pass; use :meth:`~kd_speech.slu.model.PTKDModel.loss`.
"""

from __future__ import annotations

from kd_core.losses import cross_entropy
from kd_core.objective import Objective, Term
from kd_core.schedules import Schedule
from kd_core.taps import LOGITS

from kd_speech.slu.losses import logit_l1

__all__ = ["ft_kd_objective"]


def ft_kd_objective(kd_weight: float | Schedule = 1.0, label: str = "label") -> Objective:
    """``Objective(ce: CE(batch[label], logits), ft_kd: kd_weight * L1 over logits)`` (weight 1 in the paper)."""
    return Objective(
        Term("ce", cross_entropy, student=LOGITS, target=label),
        Term("ft_kd", logit_l1, student=LOGITS, teacher=LOGITS, weight=kd_weight))
