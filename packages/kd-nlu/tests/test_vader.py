"""VADER lexicon → human label distributions, checked by hand on real entries."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_nlu.data import vader
from kd_nlu.data.vader import load_vader_distributions, load_vader_ratings, rating_distribution


def need_lexicon() -> None:
    """Fail in CI, skip elsewhere, when the vaderSentiment data package is not installed."""
    if importlib.util.find_spec("vaderSentiment") is not None:
        return
    message = "vaderSentiment is not installed (tools/setup.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_binning_by_hand() -> None:
    ratings = [-1, 0, -1, 0, 0, -2, -1, 2, -1, 0]  # the real ratings of "%)"
    assert rating_distribution(ratings) == [0.5, 0.4, 0.1]
    assert rating_distribution(ratings, bins=9) == [0.0, 0.0, 0.1, 0.4, 0.4, 0.0, 0.1, 0.0, 0.0]
    assert rating_distribution([-4, 4]) == [0.5, 0.0, 0.5]
    with pytest.raises(ConfigError, match="bins"):
        rating_distribution(ratings, bins=5)
    with pytest.raises(ConfigError, match="ratings"):
        rating_distribution([])


def test_good_has_its_known_ratings_and_distribution() -> None:
    need_lexicon()
    ratings = load_vader_ratings()
    assert ratings["good"] == [2, 1, 1, 3, 2, 4, 2, 2, 1, 1]  # mean 1.9 in the file
    assert ratings["%)"] == [-1, 0, -1, 0, 0, -2, -1, 2, -1, 0]
    tokens, probs = load_vader_distributions()
    assert torch.equal(probs[tokens.index("good")], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(probs[tokens.index("%)")], torch.tensor([0.5, 0.4, 0.1]))
    tokens9, hist = load_vader_distributions(bins=9)
    assert tokens9 == tokens
    assert torch.allclose(hist[tokens.index("good")], torch.tensor([0, 0, 0, 0, 0, 0.4, 0.4, 0.1, 0.1]))


def test_whole_lexicon_shape_and_pooled_duplicates() -> None:
    need_lexicon()
    tokens, probs = load_vader_distributions()
    assert len(tokens) == len(set(tokens)) == 7_506 and probs.shape == (7_506, 3)  # 7,520 lines, 14 repeated
    assert torch.allclose(probs.sum(1), torch.ones(7_506))
    ratings = load_vader_ratings()
    assert len(ratings["lmao"]) == 20 and sum(len(r) for r in ratings.values()) == 75_200
    # "lmao": [3,0,3,0,3,1,3,2,3,2] + [3,4,3,1,2,4,3,3,2,4] -> 2 neutral, 18 positive
    assert torch.allclose(probs[tokens.index("lmao")], torch.tensor([0.0, 0.1, 0.9]))
    # clearly negative and clearly positive words put (nearly) all their mass on their side
    assert probs[tokens.index("horrible")][0] > 0.9 and probs[tokens.index("wonderful")][2] > 0.9


def test_bad_lexicon_lines_and_a_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("yay\t2.0\t0.5\t[2, 2]\nboo\t-1.0\t0.0\t[-1]\n", encoding="utf-8")
    tokens, probs = load_vader_distributions(path=good)
    assert tokens == ["yay", "boo"] and probs.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    bad = tmp_path / "bad.txt"
    bad.write_text("yay\t2.0\t0.5\t[2, 9]\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape("-4..+4")):
        load_vader_ratings(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_vader_ratings(empty)
    monkeypatch.setattr(vader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps vaderSentiment"):
        vader.lexicon_path()
