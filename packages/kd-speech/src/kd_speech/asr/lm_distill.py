"""Distil a word-level LM into a smaller one by word-level knowledge distillation.

At every position the student matches the teacher's next-word distribution (Hinton et al. 2015,
"Distilling the Knowledge in a Neural Network"; applied per word to sequence models by Kim & Rush 2016,
"Sequence-Level Knowledge Distillation", whose *word-level* KD this is) and the observed next word:

    loss = α · T² · KL(p_teacher^T ‖ p_student^T) + (1 − α) · CE(p_student, next word),

averaged over the non-padding tokens of the same text. The student shares the teacher's vocabulary and
must have at least ``min_ratio`` (4) times fewer parameters. :func:`compare_distillation` reports the
perplexity of the teacher, the distilled student and the same student trained from scratch (same size,
same initialisation seed, same schedule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from kd_core.errors import ConfigError
from kd_core.losses import check_temperature, kl_divergence

from kd_speech.asr.lm import (
    BatchLoss,
    LMSize,
    TrainConfig,
    WordLM,
    cross_entropy_loss,
    fit_lm,
    next_token_targets,
)


def word_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                 alpha: float = 0.5, temperature: float = 2.0, ignore_index: int = -100) -> torch.Tensor:
    """α·T²·KL(teacher ‖ student at T) + (1−α)·CE, each a mean over positions whose target ≠ ``ignore_index``.

    Logits are (…, vocab) and ``targets`` (…) the next-word ids.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise ConfigError("alpha", "a number in [0, 1]", alpha)
    t = check_temperature(temperature)
    mask = targets != ignore_index
    kd = kl_divergence(student_logits, teacher_logits.detach(), temperature=t, mask=mask)
    ce = torch.nn.functional.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]).float(),
                                           targets.reshape(-1), ignore_index=ignore_index)
    return alpha * kd + (1.0 - alpha) * ce


def kd_batch_loss(teacher: WordLM, alpha: float = 0.5, temperature: float = 2.0) -> BatchLoss:
    """A :func:`~kd_speech.asr.lm.fit_lm` loss: :func:`word_kd_loss` against ``teacher`` (kept in eval mode)."""
    teacher.eval()

    def loss(student: WordLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(ids.to(next(teacher.parameters()).device), mask)[:, :-1].to(ids.device)
        return word_kd_loss(student(ids, mask)[:, :-1], teacher_logits, next_token_targets(ids, mask),
                            alpha, temperature)

    return loss


def student_size(teacher: WordLM, min_ratio: float = 4.0) -> LMSize:
    """A student size at least ``min_ratio``× smaller than ``teacher``: half the width and half the layers,
    then narrower until the ratio holds."""
    size = teacher.size
    heads = max(1, size.n_head // 2)
    width = max(heads, (size.n_embd // 2) // heads * heads)
    layers = max(1, size.n_layer // 2)
    candidate = LMSize(width, layers, heads, size.n_positions, size.dropout)
    teacher_params = teacher.num_parameters()
    while _parameters(teacher, candidate) * min_ratio > teacher_params and candidate.n_embd > heads:
        width = max(heads, (candidate.n_embd * 3 // 4) // heads * heads)
        if width == candidate.n_embd:
            break
        candidate = LMSize(width, layers, heads, size.n_positions, size.dropout)
    return candidate


def _parameters(teacher: WordLM, size: LMSize) -> int:
    """Parameters of a GPT-2 LM of ``size`` over the teacher's vocabulary (tied embeddings)."""
    d, vocab = size.n_embd, len(teacher.vocab)
    per_layer = 12 * d * d + 13 * d  # attention (4d² + 4d), MLP (8d² + 5d), two LayerNorms (4d)
    return vocab * d + size.n_positions * d + size.n_layer * per_layer + 2 * d


def check_ratio(teacher: WordLM, student: WordLM, min_ratio: float) -> float:
    """The teacher/student parameter ratio; ``ConfigError`` if below ``min_ratio`` or vocabularies differ."""
    if student.vocab.words != teacher.vocab.words:
        raise ConfigError("student", "the teacher's vocabulary (word-level KD matches distributions over it)",
                          f"{len(student.vocab)} words vs the teacher's {len(teacher.vocab)}")
    ratio = teacher.num_parameters() / student.num_parameters()
    if ratio < min_ratio:
        raise ConfigError("student", f"at least {min_ratio:g}× fewer parameters than the teacher "
                          f"({teacher.num_parameters():,})", f"{student.num_parameters():,} ({ratio:.2f}×)",
                          hint="narrow or shorten the student (student_size picks one)")
    return ratio


def distill_lm(teacher: WordLM, texts: Sequence[str], student: WordLM | None = None, alpha: float = 0.5,
               temperature: float = 2.0, config: TrainConfig | None = None, min_ratio: float = 4.0) -> WordLM:
    """Train ``student`` (default: :func:`student_size` of the teacher) on ``texts`` by word-level KD."""
    config = config or TrainConfig()
    student = student or WordLM(teacher.vocab, student_size(teacher, min_ratio), seed=config.seed)
    check_ratio(teacher, student, min_ratio)
    fit_lm(student, texts, kd_batch_loss(teacher, alpha, temperature), config)
    return student


@dataclass(frozen=True)
class DistillReport:
    """Perplexities and sizes of the teacher, the distilled student and the scratch student."""

    teacher_perplexity: float
    distilled_perplexity: float
    scratch_perplexity: float
    teacher_parameters: int
    student_parameters: int

    @property
    def ratio(self) -> float:
        """Teacher parameters over student parameters."""
        return self.teacher_parameters / self.student_parameters

    def lines(self) -> list[str]:
        """A small text table."""
        return [f"{'model':<18}{'parameters':>12}{'perplexity':>12}",
                f"{'teacher':<18}{self.teacher_parameters:>12,}{self.teacher_perplexity:>12.2f}",
                f"{'student (KD)':<18}{self.student_parameters:>12,}{self.distilled_perplexity:>12.2f}",
                f"{'student (scratch)':<18}{self.student_parameters:>12,}{self.scratch_perplexity:>12.2f}",
                f"ratio {self.ratio:.1f}×"]


def compare_distillation(teacher: WordLM, train_texts: Sequence[str], eval_texts: Sequence[str],
                         size: LMSize | None = None, alpha: float = 0.5, temperature: float = 2.0,
                         config: TrainConfig | None = None,
                         min_ratio: float = 4.0) -> tuple[WordLM, WordLM, DistillReport]:
    """Distil ``teacher`` and train the same student from scratch; returns both and their report."""
    config = config or TrainConfig()
    size = size or student_size(teacher, min_ratio)
    distilled = distill_lm(teacher, train_texts, WordLM(teacher.vocab, size, seed=config.seed), alpha,
                           temperature, config, min_ratio)
    scratch = WordLM(teacher.vocab, size, seed=config.seed)
    fit_lm(scratch, train_texts, cross_entropy_loss, config)
    report = DistillReport(teacher.perplexity(eval_texts), distilled.perplexity(eval_texts),
                           scratch.perplexity(eval_texts), teacher.num_parameters(), distilled.num_parameters())
    return distilled, scratch, report
