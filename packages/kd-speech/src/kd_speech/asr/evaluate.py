"""WER before and after rescoring decoded sets with a language model: weights tuned on validation, applied to test.

The score of a hypothesis is that of :mod:`kd_speech.asr.rescore` (acoustic + λ·(μ·new LM + (1 − μ)·decoder
LM) + β·words; Sudarshan et al., "Improved Contextual Recognition in Automatic Speech Recognition Systems by
Semantic Lattice Rescoring", arXiv 2310.09680, rescore lattices with this combination). Here it is evaluated for
a whole grid at once: every hypothesis's edit count against its reference is computed once per set (jiwer's
alignment), every distinct hypothesis is scored once by the LM, and then each grid point's picks and corpus WER
are array operations. The outcome equals :func:`~kd_speech.asr.rescore.tune_weights` (same ties: the first
hypothesis of equal scores, the first grid point of equal WER, in ``λ × μ × β`` order), only faster.

Besides the decoder's 1-best, two references frame a new LM's gain: the *oracle* WER (the best hypothesis of
each list: what no LM can beat) and the decoder's own n-gram with re-tuned weights (μ = 0: what re-weighting
alone gives, without the new LM).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jiwer
import numpy as np
from kd_core.errors import ConfigError

from kd_speech.asr.decoded import MODES, UtteranceDecode
from kd_speech.asr.rescore import (
    DEFAULT_INTERPOLATIONS,
    DEFAULT_LM_WEIGHTS,
    DEFAULT_WORD_PENALTIES,
    BatchScorer,
    RescoreWeights,
)
from kd_speech.asr.wer import normalize_text

__all__ = ["Candidates", "Grid", "LMResult", "ModeResult", "SetResult", "candidate_lists", "evaluate_lm",
           "list_wer", "oracle_picks", "pick", "score_lists", "tune"]


@dataclass(frozen=True)
class Candidates:
    """One utterance's hypotheses in one mode, as arrays: acoustic score, decoder LM score (the new LM's stands
    in where there is none), words, and edit errors against the reference."""

    texts: tuple[str, ...]
    acoustic: np.ndarray
    decoder_lm: np.ndarray
    has_decoder_lm: np.ndarray
    words: np.ndarray
    errors: np.ndarray
    reference_words: int


def candidate_lists(decodes: Sequence[UtteranceDecode], mode: str) -> list[Candidates]:
    """The :class:`Candidates` of every utterance in ``mode`` (one jiwer alignment call for the whole set)."""
    if mode not in MODES:
        raise ConfigError("mode", f"one of {MODES}", mode)
    if not decodes:
        raise ConfigError("decodes", "at least one decoded utterance", 0)
    lists = [d.candidates(mode) for d in decodes]
    references = [normalize_text(d.reference) for d in decodes]
    for d, reference in zip(decodes, references, strict=True):
        if not reference:
            raise ConfigError(f"{d.id} transcript", "a transcript with at least one word", d.reference)
    pairs_ref = [r for r, nbest in zip(references, lists, strict=True) for _ in range(len(nbest))]
    pairs_hyp = [normalize_text(h.text) for nbest in lists for h in nbest.hypotheses]
    alignment = jiwer.process_words(pairs_ref, pairs_hyp)
    errors = [sum((c.ref_end_idx - c.ref_start_idx) if c.type in ("substitute", "delete")
                  else (c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else 0 for c in chunks)
              for chunks in alignment.alignments]
    out, begin = [], 0
    for nbest, reference in zip(lists, references, strict=True):
        hyps = nbest.hypotheses
        acoustic = []
        for h in hyps:
            value = h.acoustic if h.acoustic is not None else h.total
            if value is None:
                raise ConfigError("hypothesis", "an acoustic score or a decoder total", h.text)
            acoustic.append(value)
        out.append(Candidates(
            tuple(h.text for h in hyps), np.asarray(acoustic, dtype=np.float64),
            np.asarray([h.lm if h.lm is not None else 0.0 for h in hyps], dtype=np.float64),
            np.asarray([h.lm is not None for h in hyps]), np.asarray([len(h.words) for h in hyps], dtype=np.float64),
            np.asarray(errors[begin: begin + len(hyps)], dtype=np.int64), len(reference.split())))
        begin += len(hyps)
    return out


def score_lists(lists: Sequence[Candidates], scorer: BatchScorer) -> tuple[list[np.ndarray], float, int]:
    """The new LM's log-probability of every hypothesis (each distinct text scored once, shortest first), the
    seconds the scoring took and how many distinct texts it scored."""
    texts = sorted({t for c in lists for t in c.texts}, key=lambda t: (len(t.split()), t))
    began = time.perf_counter()
    values = list(scorer(texts)) if texts else []
    seconds = time.perf_counter() - began
    if len(values) != len(texts):
        raise ConfigError("lm", "one score per text", f"{len(values)} for {len(texts)}")
    lookup = dict(zip(texts, map(float, values), strict=True))
    return [np.asarray([lookup[t] for t in c.texts], dtype=np.float64) for c in lists], seconds, len(texts)


@dataclass(frozen=True)
class Grid:
    """The weights tuned over: λ (LM weight), μ (the new LM's interpolation share) and β (word penalty)."""

    lm_weights: tuple[float, ...] = DEFAULT_LM_WEIGHTS
    interpolations: tuple[float, ...] = DEFAULT_INTERPOLATIONS
    word_penalties: tuple[float, ...] = DEFAULT_WORD_PENALTIES

    def __post_init__(self) -> None:
        for name in ("lm_weights", "interpolations", "word_penalties"):
            values = tuple(getattr(self, name))
            if not values:
                raise ConfigError(name, "at least one value", values)
            object.__setattr__(self, name, values)
        for lam, mu, beta in self.points():
            RescoreWeights(lam, mu, beta)  # each value checked, errors naming the weight

    def points(self) -> list[tuple[float, float, float]]:
        """Every (λ, μ, β), in ``itertools.product`` order."""
        return list(itertools.product(self.lm_weights, self.interpolations, self.word_penalties))

    @classmethod
    def fixed(cls, weights: RescoreWeights) -> Grid:
        """A one-point grid."""
        return cls((weights.lm_weight,), (weights.interpolation,), (weights.word_penalty,))


def _scores(c: Candidates, new_lm: np.ndarray, lam: np.ndarray, mu: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(grid points, hypotheses) combined scores: a + λ·(μ·n + (1 − μ)·d) + β·w (μ = 1 without a decoder LM)."""
    mu_eff = np.where(c.has_decoder_lm[None, :], mu[:, None], 1.0)
    lm = mu_eff * new_lm[None, :] + np.where(mu_eff < 1.0, (1.0 - mu_eff) * c.decoder_lm[None, :], 0.0)
    return c.acoustic[None, :] + lam[:, None] * lm + beta[:, None] * c.words[None, :]


def _grid_picks(lists: Sequence[Candidates], scores: Sequence[np.ndarray],
                points: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """(lists, grid points) index of the top hypothesis of each list at each point (first of equal scores)."""
    lam, mu, beta = (np.asarray(v, dtype=np.float64) for v in zip(*points, strict=True))
    return np.stack([np.argmax(_scores(c, s, lam, mu, beta), axis=1) for c, s in zip(lists, scores, strict=True)])


def list_wer(lists: Sequence[Candidates], picks: Sequence[int]) -> float:
    """Corpus WER of the picked hypotheses: all their edit errors over all reference words."""
    errors = sum(int(c.errors[i]) for c, i in zip(lists, picks, strict=True))
    return errors / sum(c.reference_words for c in lists)


def oracle_picks(lists: Sequence[Candidates]) -> list[int]:
    """The hypothesis with the fewest errors in each list (the first of equals)."""
    return [int(np.argmin(c.errors)) for c in lists]


def pick(lists: Sequence[Candidates], scores: Sequence[np.ndarray], weights: RescoreWeights) -> list[int]:
    """The top hypothesis of each list under ``weights``."""
    point = [(weights.lm_weight, weights.interpolation, weights.word_penalty)]
    return [int(i) for i in _grid_picks(lists, scores, point)[:, 0]]


def tune(lists: Sequence[Candidates], scores: Sequence[np.ndarray], grid: Grid) -> tuple[RescoreWeights, float]:
    """The grid point with the lowest corpus WER (the first of equals) and that WER."""
    points = grid.points()
    picks = _grid_picks(lists, scores, points)
    errors = np.stack([c.errors[picks[i]] for i, c in enumerate(lists)]).sum(axis=0)
    best = int(np.argmin(errors))  # the same reference words at every point: fewest errors = lowest WER
    return RescoreWeights(*points[best]), float(errors[best]) / sum(c.reference_words for c in lists)


@dataclass
class SetResult:
    """One test set in one mode: WER of the decoder's 1-best, of the n-gram with re-tuned weights, after
    rescoring, the oracle, and the picked texts (``picks``: rescored; ``ngram_picks``: the re-tuned n-gram's)."""

    before: float
    ngram: float
    after: float
    oracle: float
    picks: list[str]
    ngram_picks: list[str]
    errors_before: list[int]
    errors_after: list[int]


@dataclass
class ModeResult:
    """One mode: the weights (tuned on validation, or given), the validation WER before and after, the re-tuned
    n-gram's weights, and each test set's :class:`SetResult`."""

    weights: RescoreWeights
    tuned: bool
    val_before: float | None
    val_after: float | None
    ngram_weights: RescoreWeights | None
    tests: dict[str, SetResult] = field(default_factory=dict)


@dataclass
class LMResult:
    """Every mode's result for one LM, and how long the LM took to score its distinct hypotheses."""

    modes: dict[str, ModeResult]
    lm_seconds: float
    hypotheses_scored: int

    @property
    def ms_per_hypothesis(self) -> float:
        """LM scoring time per distinct hypothesis, in milliseconds."""
        return 1000.0 * self.lm_seconds / max(1, self.hypotheses_scored)


def evaluate_lm(scorer: BatchScorer, tests: Mapping[str, Sequence[UtteranceDecode]],
                val: Sequence[UtteranceDecode] | None = None, modes: Sequence[str] = MODES,
                grid: Grid | None = None, ngram_grid: Grid | None = None,
                progress: Callable[[str], None] | None = None) -> LMResult:
    """Rescore the ``tests`` sets (name -> decodes) in each mode with ``scorer`` (e.g. ``WordLM.sentence_logprobs``).

    With ``val``, the weights are tuned on it over ``grid`` (a one-point grid means given weights), and so are
    the decoder n-gram's alone (``ngram_grid``, default ``grid`` with μ = 0); without it the grid must be one
    point and the n-gram baseline is left out (``ngram`` is then the 1-best WER).
    """
    grid = grid or Grid()
    if val is None and len(grid.points()) != 1:
        raise ConfigError("val", "validation decodes to tune the weights on (or one fixed point of weights)", None)
    for mode in modes:
        if mode not in MODES:
            raise ConfigError("mode", f"one of {MODES}", mode)
    if not tests:
        raise ConfigError("tests", "at least one test set", 0)
    sets = {name: {mode: candidate_lists(decodes, mode) for mode in modes} for name, decodes in tests.items()}
    val_sets = {mode: candidate_lists(val, mode) for mode in modes} if val is not None else {}
    everything = [c for by_mode in (*sets.values(), val_sets) for lists in by_mode.values() for c in lists]
    flat, seconds, count = score_lists(everything, scorer)
    lookup = {id(c): s for c, s in zip(everything, flat, strict=True)}
    ngram_grid = ngram_grid or Grid(grid.lm_weights, (0.0,), grid.word_penalties)
    out: dict[str, ModeResult] = {}
    for mode in modes:
        if progress is not None:
            progress(mode)
        val_lists = val_sets.get(mode)
        if val_lists is not None and val is not None:
            val_scores = [lookup[id(c)] for c in val_lists]
            weights, val_after = tune(val_lists, val_scores, grid)
            ngram_weights, _ = tune(val_lists, [np.zeros_like(s) for s in val_scores], ngram_grid)
            val_before = _first_best_wer(val, val_lists)
        else:
            weights, val_after, ngram_weights, val_before = RescoreWeights(*grid.points()[0]), None, None, None
        result = ModeResult(weights, len(grid.points()) > 1, val_before, val_after, ngram_weights)
        for name, by_mode in sets.items():
            lists = by_mode[mode]
            scores = [lookup[id(c)] for c in lists]
            picks = pick(lists, scores, weights)
            ngram = (pick(lists, [np.zeros_like(s) for s in scores], ngram_weights) if ngram_weights is not None
                     else None)
            errors_before = _first_best_errors(tests[name], lists)
            result.tests[name] = SetResult(
                before=sum(errors_before) / sum(c.reference_words for c in lists),
                ngram=list_wer(lists, ngram) if ngram is not None else math.nan,
                after=list_wer(lists, picks), oracle=list_wer(lists, oracle_picks(lists)),
                picks=[c.texts[i] for c, i in zip(lists, picks, strict=True)],
                ngram_picks=[c.texts[i] for c, i in zip(lists, ngram, strict=True)] if ngram is not None else [],
                errors_before=errors_before,
                errors_after=[int(c.errors[i]) for c, i in zip(lists, picks, strict=True)])
        out[mode] = result
    return LMResult(out, seconds, count)


def _first_best_errors(decodes: Sequence[UtteranceDecode], lists: Sequence[Candidates]) -> list[int]:
    """Edit errors of the decoder's 1-best of each utterance (the n-best list's first entry; in lattice mode the
    1-best may not be among the paths, so it is aligned on its own)."""
    out = []
    for d, c in zip(decodes, lists, strict=True):
        if d.first_best in c.texts:
            out.append(int(c.errors[c.texts.index(d.first_best)]))
        else:
            chunks = jiwer.process_words([normalize_text(d.reference)], [normalize_text(d.first_best)]).alignments[0]
            out.append(sum((x.ref_end_idx - x.ref_start_idx) if x.type in ("substitute", "delete")
                           else (x.hyp_end_idx - x.hyp_start_idx) if x.type == "insert" else 0 for x in chunks))
    return out


def _first_best_wer(decodes: Sequence[UtteranceDecode], lists: Sequence[Candidates]) -> float:
    errors = _first_best_errors(decodes, lists)
    return sum(errors) / sum(c.reference_words for c in lists)
