"""N-best rescoring: the score combination by hand, the 1-best changing on a constructed list, tuning."""

from __future__ import annotations

import pytest
from kd_core.errors import ConfigError
from kd_speech.asr.decode import Hypothesis, NBest
from kd_speech.asr.rescore import (
    RescoreWeights,
    combine,
    hypothesis_score,
    rescore_nbest,
    rescored_wer,
    score_nbests,
    tune_weights,
)

# the decoder prefers the first (better acoustic and decoder-LM scores); the new LM prefers the second
NBEST = NBest((Hypothesis("wreck a nice beach", acoustic=-100.0, lm=-20.0, total=-1.0),
               Hypothesis("recognize speech", acoustic=-103.0, lm=-21.0, total=-1.2)))
NEW_LM = {"wreck a nice beach": -30.0, "recognize speech": -10.0, "wreck a nice peach": -40.0,
          "recognise speech": -25.0}


def new_lm(texts):
    return [NEW_LM[text] for text in texts]


def test_combination_by_hand() -> None:
    weights = RescoreWeights(lm_weight=2.0, interpolation=0.25, word_penalty=0.5)
    # -100 + 2 · (0.25 · -10 + 0.75 · -20) + 0.5 · 3 = -100 - 35 + 1.5
    assert combine(-100.0, -10.0, -20.0, 3, weights) == pytest.approx(-133.5)
    # no decoder LM score: the new LM alone (μ = 1)
    assert combine(-100.0, -10.0, None, 3, weights) == pytest.approx(-100.0 - 20.0 + 1.5)
    # hypothesis_score counts words; a missing acoustic score falls back to the decoder total
    assert hypothesis_score(NBEST[1], -10.0, weights) == pytest.approx(-103.0 + 2 * (-2.5 - 15.75) + 1.0)
    assert hypothesis_score(Hypothesis("a b", None, None, -7.0), -1.0, weights) == pytest.approx(-7.0 - 2 + 1)
    with pytest.raises(ConfigError, match="acoustic"):
        hypothesis_score(Hypothesis("a"), -1.0, weights)


def test_rescoring_changes_the_one_best() -> None:
    kept = rescore_nbest(NBEST, new_lm, RescoreWeights(lm_weight=0.0))
    assert kept.text == "wreck a nice beach"  # λ = 0: acoustic only keeps the first
    decoder_only = rescore_nbest(NBEST, new_lm, RescoreWeights(lm_weight=1.0, interpolation=0.0))
    assert decoder_only.text == "wreck a nice beach"  # the decoder's LM agrees with the acoustics
    moved = rescore_nbest(NBEST, new_lm, RescoreWeights(lm_weight=1.0, interpolation=1.0))
    assert moved.text == "recognize speech"  # -103 - 10 = -113 beats -100 - 30 = -130
    assert moved.scores == pytest.approx((-113.0, -130.0))
    precomputed = rescore_nbest(NBEST, [-30.0, -10.0], RescoreWeights(lm_weight=1.0))
    assert precomputed.hypotheses == moved.hypotheses
    # a penalty of +10 per word rewards the four-word hypothesis back: -130 + 40 > -113 + 20
    assert rescore_nbest(NBEST, new_lm, RescoreWeights(1.0, 1.0, 10.0)).text == "wreck a nice beach"


def test_ties_keep_the_decoder_order() -> None:
    tied = NBest((Hypothesis("a b", -1.0, -1.0), Hypothesis("c d", -1.0, -1.0)))
    assert rescore_nbest(tied, [-2.0, -2.0], RescoreWeights()).text == "a b"
    assert rescore_nbest(NBest(()), [], RescoreWeights()).text == ""


def test_tuning_finds_weights_that_lower_validation_wer() -> None:
    nbests = [NBEST, NBest((Hypothesis("wreck a nice peach", -50.0, -12.0), Hypothesis("recognise speech", -52.0,
                                                                                          -13.0)))]
    references = ["recognize speech", "recognise speech"]
    tuning = tune_weights(nbests, references, new_lm, lm_weights=(0.0, 0.5, 1.0), interpolations=(0.0, 1.0),
                          word_penalties=(0.0,))
    assert tuning.baseline_wer == pytest.approx(8 / 4)  # each list: 2 substitutions + 2 insertions, 2 words
    assert tuning.wer == 0.0 < tuning.baseline_wer
    assert tuning.weights == RescoreWeights(0.5, 1.0, 0.0)  # the first grid point that reaches 0
    assert len(tuning.grid) == 6
    scores = score_nbests(nbests, new_lm)
    assert scores == [[-30.0, -10.0], [-40.0, -25.0]]
    assert rescored_wer(nbests, references, scores, tuning.weights) == 0.0


def test_bad_weights_and_inputs() -> None:
    with pytest.raises(ConfigError, match="interpolation"):
        RescoreWeights(interpolation=1.5)
    with pytest.raises(ConfigError, match="lm_weight"):
        RescoreWeights(lm_weight=float("nan"))
    with pytest.raises(ConfigError, match="lm_scores"):
        rescore_nbest(NBEST, [-1.0], RescoreWeights())
    with pytest.raises(ConfigError, match="references"):
        tune_weights([NBEST], [], new_lm)
