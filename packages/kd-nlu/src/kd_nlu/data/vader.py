"""Human label distributions: the VADER lexicon's 10 ratings per token, as probability vectors.

Hutto and Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text",
ICWSM 2014. The PyPI package ``vaderSentiment`` (3.3.2, MIT) ships ``vader_lexicon.txt``: 7,520 lines of
``token<TAB>mean<TAB>std<TAB>[10 integer ratings in -4..+4]`` from ten independent human raters. The file is
read from the installed package folder, found with ``importlib.util.find_spec`` without importing the
package (which needs ``requests``), so ``vaderSentiment`` is a dev/CI data package, not a runtime
dependency of kd-nlu.

Binning (``bins=3``): a rating r is *negative* when r ≤ −1, *neutral* when r = 0 and *positive* when
r ≥ 1 (the ratings are integers, so this is the same as thresholds at ±0.5 on the rating scale). A token's
distribution is the fraction of its ratings in each bin. ``bins=9`` gives the full histogram over
−4..+4. The 14 tokens listed twice (``lol``, ``ok``, ``xd``...) have their 20 ratings pooled, giving
7,506 tokens.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from kd_core.errors import ConfigError, DataError

PIP_NAME = "vaderSentiment"
LEXICON_FILE = "vader_lexicon.txt"
LABELS_3 = ("negative", "neutral", "positive")
LABELS_9 = tuple(str(r) for r in range(-4, 5))


def lexicon_path() -> Path:
    """The installed ``vader_lexicon.txt``; ``DataError`` with the pip command when it is missing."""
    spec = importlib.util.find_spec(PIP_NAME)
    path = Path(spec.origin).parent / LEXICON_FILE if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise DataError(PIP_NAME, f"the installed PyPI package that ships {LEXICON_FILE}", "not installed",
                        hint=f"run `.venv/bin/pip install --no-deps {PIP_NAME}==3.3.2` (tools/setup.sh does)")
    return path


def load_vader_ratings(path: Path | None = None) -> dict[str, list[int]]:
    """Token -> its human ratings (10, or 20 for a token listed twice), in file order."""
    path = Path(path) if path is not None else lexicon_path()
    ratings: dict[str, list[int]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            values = [int(v) for v in json.loads(fields[3])]
        except (IndexError, ValueError, TypeError):
            raise DataError(f"{path}:{number}", "token, mean, std and a JSON list of integer ratings",
                            line[:80]) from None
        if not values or any(not -4 <= v <= 4 for v in values):
            raise DataError(f"{path}:{number}", "ratings in -4..+4", values)
        ratings.setdefault(fields[0], []).extend(values)
    if not ratings:
        raise DataError(str(path), "a lexicon with at least one rated token", "an empty file")
    return ratings


def rating_distribution(ratings: Sequence[int], bins: int = 3) -> list[float]:
    """The fraction of ``ratings`` in each bin: 3 (negative ≤ −1, neutral 0, positive ≥ 1) or 9 (−4..+4)."""
    if bins not in (3, 9):
        raise ConfigError("bins", "3 (negative/neutral/positive) or 9 (the -4..+4 histogram)", bins)
    if not ratings:
        raise ConfigError("ratings", "at least one rating", list(ratings))
    counts = [0] * bins
    for r in ratings:
        counts[(r > 0) - (r < 0) + 1 if bins == 3 else r + 4] += 1
    return [c / len(ratings) for c in counts]


def load_vader_distributions(bins: int = 3, path: Path | None = None) -> tuple[list[str], torch.Tensor]:
    """Every token and its human label distribution, ``(tokens, probs[N, bins])`` (rows sum to 1)."""
    ratings = load_vader_ratings(path)
    tokens = list(ratings)
    probs = torch.tensor([rating_distribution(ratings[t], bins) for t in tokens], dtype=torch.float32)
    return tokens, probs
