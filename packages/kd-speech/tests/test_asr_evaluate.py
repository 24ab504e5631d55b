"""Rescoring evaluation over a weight grid (kd_speech.asr.evaluate): the same picks and weights as the reference
implementation in kd_speech.asr.rescore on random lists, edit counts by hand, the oracle and n-gram baselines."""

from __future__ import annotations

import random

import pytest
from kd_core.errors import ConfigError
from kd_speech.asr.decode import Hypothesis, NBest
from kd_speech.asr.decoded import UtteranceDecode
from kd_speech.asr.evaluate import Grid, candidate_lists, evaluate_lm, list_wer, oracle_picks, pick, score_lists, tune
from kd_speech.asr.rescore import RescoreWeights, rescore_nbest, tune_weights
from kd_speech.asr.wer import utterance_errors

WORDS = ["turn", "the", "lights", "on", "off", "in", "kitchen", "bedroom", "music", "lamp"]


def _decode(rng: random.Random, index: int, hypotheses: int = 6) -> UtteranceDecode:
    reference = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
    texts = list(dict.fromkeys([reference] + [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
                                              for _ in range(hypotheses)]))
    rng.shuffle(texts)
    hyps = tuple(Hypothesis(t, acoustic=-rng.uniform(50, 60), lm=-rng.uniform(5, 15) if rng.random() > 0.2 else None,
                            total=-rng.uniform(1, 2)) for t in texts)
    lattice = NBest(tuple(reversed(hyps)))
    return UtteranceDecode(f"u{index}", reference, NBest(hyps), lattice, 10, 20, 0.5, 1.0)


def _lm(texts):
    return [-2.0 * len(t.split()) - (sum(map(ord, t)) % 7) for t in texts]


def test_candidates_count_edit_errors_by_hand() -> None:
    decode = UtteranceDecode("x", "Turn the lights ON.", NBest((Hypothesis("turn lights on", -1.0, -2.0),
                                                                  Hypothesis("turn the light on now", -1.5, None),
                                                                  Hypothesis("", None, None, -9.0))),
                             NBest(()), 0, 0, 0.1, 1.0)
    (nbest,) = candidate_lists([decode], "nbest")
    assert nbest.errors.tolist() == [1, 2, 4]  # a deletion; a substitution and an insertion; four deletions
    assert nbest.reference_words == 4 and nbest.words.tolist() == [3, 5, 0]
    assert nbest.acoustic.tolist() == [-1.0, -1.5, -9.0]  # the decoder total stands in for a missing acoustic
    assert nbest.has_decoder_lm.tolist() == [True, False, False]
    (lattice,) = candidate_lists([decode], "lattice")  # no lattice paths: the decoder's 1-best alone
    assert lattice.texts == ("turn lights on",)
    assert [utterance_errors(decode.reference, t).errors for t in nbest.texts] == nbest.errors.tolist()


@pytest.mark.parametrize("mode", ["nbest", "lattice"])
def test_grid_tuning_matches_the_reference_implementation(mode: str) -> None:
    rng = random.Random(3)
    decodes = [_decode(rng, i) for i in range(25)]
    lists = candidate_lists(decodes, mode)
    scores, seconds, count = score_lists(lists, _lm)
    assert count == len({t for c in lists for t in c.texts}) and seconds >= 0
    grid = Grid((0.0, 0.5, 1.0, 3.0), (0.0, 0.5, 1.0), (-2.0, 0.0, 2.0))
    weights, wer = tune(lists, scores, grid)
    nbests = [d.candidates(mode) for d in decodes]
    reference = tune_weights(nbests, [d.reference for d in decodes], _lm, grid.lm_weights, grid.interpolations,
                             grid.word_penalties)
    assert weights == reference.weights and wer == pytest.approx(reference.wer)
    for lam, mu, beta in grid.points():  # every grid point picks what rescore_nbest picks
        w = RescoreWeights(lam, mu, beta)
        picks = pick(lists, scores, w)
        assert [c.texts[i] for c, i in zip(lists, picks)] == [rescore_nbest(n, _lm, w).text for n in nbests]
    assert list_wer(lists, oracle_picks(lists)) == 0.0  # every list holds its reference
    assert wer < list_wer(lists, [0] * len(lists))


def test_evaluate_lm_reports_before_after_ngram_and_oracle() -> None:
    rng = random.Random(5)
    val, test = [_decode(rng, i) for i in range(12)], [_decode(rng, i) for i in range(12, 30)]

    def reference_lm(texts):  # an LM that knows the references: rescoring with it must help
        known = {d.reference for d in val + test}
        return [0.0 if t in known else -100.0 for t in texts]

    result = evaluate_lm(reference_lm, {"test": test}, val=val)
    for mode, r in result.modes.items():
        t = r.tests["test"]
        assert r.tuned and r.weights.interpolation > 0 and r.ngram_weights.interpolation == 0.0
        assert t.after == t.oracle == 0.0 < t.before and r.val_after == 0.0
        assert t.picks == [d.reference for d in test] and sum(t.errors_after) == 0
        assert t.before == pytest.approx(sum(t.errors_before) / sum(len(d.reference.split()) for d in test))
        first = [d.nbest.best.text for d in test]
        assert t.errors_before == [utterance_errors(d.reference, h).errors for d, h in zip(test, first)], mode
        assert 0.0 <= t.oracle <= t.ngram and len(t.ngram_picks) == len(test)
    assert result.hypotheses_scored > 0 and result.ms_per_hypothesis >= 0
    fixed = evaluate_lm(reference_lm, {"test": test}, grid=Grid.fixed(RescoreWeights(0.0, 1.0, 0.0)),
                        modes=["nbest"])
    r = fixed.modes["nbest"]
    assert not r.tuned and r.val_before is None and r.ngram_weights is None
    acoustic_best = [max(d.nbest.hypotheses, key=lambda h: h.acoustic).text for d in test]
    assert r.tests["test"].picks == acoustic_best  # λ = 0: the acoustics alone decide


def test_bad_grids_and_inputs() -> None:
    with pytest.raises(ConfigError, match="interpolation"):
        Grid((1.0,), (1.5,), (0.0,))
    with pytest.raises(ConfigError, match="lm_weights"):
        Grid((), (1.0,), (0.0,))
    rng = random.Random(0)
    with pytest.raises(ConfigError, match="val"):
        evaluate_lm(_lm, {"test": [_decode(rng, 0)]})  # a grid to tune, and nothing to tune it on
    with pytest.raises(ConfigError, match="mode"):
        candidate_lists([_decode(rng, 0)], "words")
    empty = UtteranceDecode("e", "  ...  ", NBest((Hypothesis("a", -1.0),)), NBest(()), 0, 0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="e transcript"):
        candidate_lists([empty], "nbest")
