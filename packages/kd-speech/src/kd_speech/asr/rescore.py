"""Rescore n-best lists and lattices with a language model trained here.

Each hypothesis h gets

    score(h) = acoustic(h) + λ · (μ · new_lm(h) + (1 − μ) · decoder_lm(h)) + β · words(h),

with λ the LM weight, μ the interpolation weight of the new LM against the decoder's own LM score
(log-linear interpolation of the two log-probabilities; μ is taken as 1 where a hypothesis has no decoder
LM score) and β a word insertion penalty (a bonus when positive). All scores are natural logs. Where a
hypothesis has no acoustic score, its decoder total stands in for it. This is the classic
noisy-channel combination P(audio | words) · P(words)^λ of n-best rescoring.

λ, μ and β are tuned on a validation set by grid search for the lowest corpus WER (ties go to the first
grid point, grids in the given order). The new LM's scores are computed once per hypothesis and reused
across the grid.

Lattice rescoring is n-best rescoring of the lattice's top-N distinct paths: the paths come from the
lattice under its own link scores (for pocketsphinx lattices, the decoder's acoustic scores and bigram
LM), then each path's *full word sequence* is scored by the new LM (and, if given, the decoder's full
n-gram). Replacing link LM scores inside the lattice would need the lattice expanded to the new LM's
(unbounded) context; scoring the top-N paths is the usual approximation, exact as N grows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kd_core.errors import ConfigError

from kd_speech.asr.decode import Hypothesis, NBest
from kd_speech.asr.lattice import Lattice
from kd_speech.asr.wer import word_error_rate

#: batch scorer: sentence log-probabilities (nats) of the given texts, e.g. ``WordLM.sentence_logprobs``
BatchScorer = Callable[[Sequence[str]], Sequence[float]]

DEFAULT_LM_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 6.5, 8.0, 10.0, 13.0, 16.0, 20.0)
DEFAULT_INTERPOLATIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_WORD_PENALTIES = (-15.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, "a finite number", value)
    return float(value)


@dataclass(frozen=True)
class RescoreWeights:
    """λ (``lm_weight``), μ (``interpolation``, new LM's share, in [0, 1]) and β (``word_penalty``)."""

    lm_weight: float = 1.0
    interpolation: float = 1.0
    word_penalty: float = 0.0

    def __post_init__(self) -> None:
        _finite("lm_weight", self.lm_weight)
        _finite("word_penalty", self.word_penalty)
        if not 0.0 <= _finite("interpolation", self.interpolation) <= 1.0:
            raise ConfigError("interpolation", "a number in [0, 1]", self.interpolation)


def combine(acoustic: float, new_lm: float, decoder_lm: float | None, n_words: int,
            weights: RescoreWeights) -> float:
    """``acoustic + λ·(μ·new_lm + (1−μ)·decoder_lm) + β·n_words`` (μ = 1 when ``decoder_lm`` is ``None``)."""
    mu = weights.interpolation if decoder_lm is not None else 1.0
    lm = mu * new_lm + ((1.0 - mu) * decoder_lm if decoder_lm is not None and mu < 1.0 else 0.0)
    return acoustic + weights.lm_weight * lm + weights.word_penalty * n_words


def hypothesis_score(hypothesis: Hypothesis, new_lm: float, weights: RescoreWeights) -> float:
    """:func:`combine` for one hypothesis (its total stands in for a missing acoustic score)."""
    acoustic = hypothesis.acoustic if hypothesis.acoustic is not None else hypothesis.total
    if acoustic is None:
        raise ConfigError("hypothesis", "an acoustic score or a decoder total", hypothesis.text)
    return combine(acoustic, new_lm, hypothesis.lm, len(hypothesis.words), weights)


@dataclass(frozen=True)
class Rescored:
    """An n-best list re-ranked by the combined score: hypotheses and scores, best first."""

    hypotheses: tuple[Hypothesis, ...]
    scores: tuple[float, ...]

    @property
    def best(self) -> Hypothesis | None:
        """The top hypothesis after rescoring (``None`` for an empty list)."""
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def text(self) -> str:
        """The top hypothesis' text ("" for an empty list)."""
        return self.hypotheses[0].text if self.hypotheses else ""


def _lm_scores(nbest: NBest, lm: BatchScorer | Sequence[float]) -> list[float]:
    scores = list(lm(nbest.texts)) if callable(lm) else [float(s) for s in lm]
    if len(scores) != len(nbest):
        raise ConfigError("lm_scores", f"one score per hypothesis ({len(nbest)})", len(scores))
    return scores


def rescore_nbest(nbest: NBest, lm: BatchScorer | Sequence[float], weights: RescoreWeights) -> Rescored:
    """Re-rank ``nbest`` by :func:`hypothesis_score`; ``lm`` is a batch scorer or precomputed new-LM scores.

    Ties keep the original order (a stable sort), so equal scores never move the decoder's 1-best.
    """
    scores = [hypothesis_score(h, s, weights) for h, s in zip(nbest.hypotheses, _lm_scores(nbest, lm))]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return Rescored(tuple(nbest.hypotheses[i] for i in order), tuple(scores[i] for i in order))


def score_nbests(nbests: Sequence[NBest], lm: BatchScorer) -> list[list[float]]:
    """The new LM's score of every hypothesis of every list (one batched call)."""
    texts = [text for nbest in nbests for text in nbest.texts]
    flat = list(lm(texts)) if texts else []
    out, begin = [], 0
    for nbest in nbests:
        out.append(flat[begin: begin + len(nbest)])
        begin += len(nbest)
    return out


def first_best_wer(nbests: Sequence[NBest], references: Sequence[str]) -> float:
    """Corpus WER of each list's first hypothesis (the decoder's 1-best): the baseline."""
    return word_error_rate(references, [n.best.text if n.best else "" for n in nbests])


def rescored_wer(nbests: Sequence[NBest], references: Sequence[str], lm_scores: Sequence[Sequence[float]],
                 weights: RescoreWeights) -> float:
    """Corpus WER after rescoring every list with ``weights``."""
    return word_error_rate(references, [rescore_nbest(n, s, weights).text for n, s in zip(nbests, lm_scores)])


@dataclass(frozen=True)
class Tuning:
    """The grid search's outcome: the best weights, their WER, the 1-best WER, and every grid point's WER."""

    weights: RescoreWeights
    wer: float
    baseline_wer: float
    grid: tuple[tuple[RescoreWeights, float], ...]


def tune_weights(nbests: Sequence[NBest], references: Sequence[str], lm: BatchScorer | Sequence[Sequence[float]],
                 lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
                 interpolations: Sequence[float] = DEFAULT_INTERPOLATIONS,
                 word_penalties: Sequence[float] = DEFAULT_WORD_PENALTIES) -> Tuning:
    """Grid-search λ × μ × β for the lowest corpus WER of the rescored lists against ``references``."""
    if len(nbests) != len(references):
        raise ConfigError("references", f"one per n-best list ({len(nbests)})", len(references))
    if not nbests:
        raise ConfigError("nbests", "at least one validation utterance", 0)
    for name, grid in (("lm_weights", lm_weights), ("interpolations", interpolations),
                       ("word_penalties", word_penalties)):
        if not len(grid):
            raise ConfigError(name, "at least one value", grid)
    scores = score_nbests(nbests, lm) if callable(lm) else [list(s) for s in lm]
    if len(scores) != len(nbests) or any(len(s) != len(n) for s, n in zip(scores, nbests)):
        raise ConfigError("lm", "one score per hypothesis of every list", [len(s) for s in scores])
    results: list[tuple[RescoreWeights, float]] = []
    seen: dict[tuple[str, ...], float] = {}
    for lam, mu, beta in itertools.product(lm_weights, interpolations, word_penalties):
        weights = RescoreWeights(lam, mu, beta)
        picks = tuple(rescore_nbest(n, s, weights).text for n, s in zip(nbests, scores))
        if picks not in seen:  # many grid points pick the same hypotheses: count their WER once
            seen[picks] = word_error_rate(references, list(picks))
        results.append((weights, seen[picks]))
    best_weights, best_wer = min(results, key=lambda item: item[1])  # min keeps the first of equals
    return Tuning(best_weights, best_wer, first_best_wer(nbests, references), tuple(results))


def lattice_nbest(lattice: Lattice, n: int = 50, decoder_lm: Callable[[Sequence[str]], float] | None = None,
                  lm_weight: float | None = None, word_penalty: float | None = None) -> NBest:
    """The lattice's ``n`` best distinct word sequences as an :class:`NBest` (acoustic = path acoustic score).

    The decoder LM score is ``decoder_lm(words)`` when given (a full-sentence n-gram score, e.g.
    ``PocketsphinxDecoder.lm_logprob``), else the path's summed link LM scores.
    """
    paths = lattice.nbest_paths(n, lm_weight, word_penalty, unique=True)
    return NBest(tuple(Hypothesis(p.text, p.acoustic, decoder_lm(p.words) if decoder_lm else p.lm, p.score)
                       for p in paths))


def rescore_lattice(lattice: Lattice, lm: BatchScorer, weights: RescoreWeights, n: int = 50,
                    decoder_lm: Callable[[Sequence[str]], float] | None = None) -> Rescored:
    """Best path of ``lattice`` under the new LM: :func:`rescore_nbest` over its top-``n`` distinct paths."""
    return rescore_nbest(lattice_nbest(lattice, n, decoder_lm), lm, weights)
