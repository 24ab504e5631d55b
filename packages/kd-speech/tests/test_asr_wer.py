"""WER through jiwer on known strings, against hand counts; the shared text normalisation; bad input."""

from __future__ import annotations

import jiwer
import pytest
from kd_core.errors import ConfigError
from kd_speech.asr.wer import (
    corpus_errors,
    normalize_text,
    per_utterance_errors,
    utterance_errors,
    word_error_rate,
)

REFERENCES = ["the cat sat on the mat", "hello world", "he was not an ill disposed young man"]
HYPOTHESES = ["the cat sat on mat", "hello there world", "he was not until this blows young man"]


def test_normalize_text_lowercases_and_strips_punctuation() -> None:
    assert normalize_text("  Hello, World!  It's 'quoted' -- fine. ") == "hello world it's quoted fine"
    assert normalize_text("Mr. Dashwood's estate; 1811") == "mr dashwood's estate 1811"
    assert normalize_text("...") == ""


def test_wer_matches_hand_counts_and_jiwer() -> None:
    # hand counts: 1 deletion of 6 words; 1 insertion for 2 words; 3 substitutions ("an ill disposed") of 8
    per = per_utterance_errors(REFERENCES, HYPOTHESES)
    assert [(e.substitutions, e.deletions, e.insertions) for e in per] == [(0, 1, 0), (0, 0, 1), (3, 0, 0)]
    assert [e.wer for e in per] == pytest.approx([1 / 6, 1 / 2, 3 / 8])
    assert word_error_rate(REFERENCES, HYPOTHESES) == pytest.approx(5 / 16)
    assert word_error_rate(REFERENCES, HYPOTHESES) == pytest.approx(jiwer.wer(REFERENCES, HYPOTHESES))
    total = corpus_errors(REFERENCES, HYPOTHESES)
    assert (total.errors, total.reference_words, total.hits) == (5, 16, 12)


def test_wer_normalises_before_counting() -> None:
    assert utterance_errors("The cat, sat!", "the CAT sat").wer == 0.0
    raw = utterance_errors("The cat, sat!", "the CAT sat", normalize=False)
    assert raw.substitutions == 3  # The/the, cat,/CAT, sat!/sat
    assert utterance_errors("a b", "").deletions == 2


def test_wer_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"references\[1\]"):
        word_error_rate(["a", " ?! "], ["a", "b"])
    with pytest.raises(ConfigError, match="hypotheses"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ConfigError, match="lists of strings"):
        word_error_rate("a b", "a b")
