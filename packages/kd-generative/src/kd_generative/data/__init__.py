"""Offline paired image-to-image data for generative models (nothing downloads from a hub).

- :func:`build_pairs`: edges->photo, grey->photo and mask->photo pairs cut from real photos that ship with
  scikit-image and the Debian package ``opencv-doc`` (:mod:`kd_generative.data.photos`), split by source and
  cached with a manifest (:mod:`kd_generative.data.pairs`).
- :func:`read_folder_pairs`: a user's own pairs from two folders (:mod:`kd_generative.data.folder`).
"""

from __future__ import annotations

from kd_generative.data.folder import read_folder_pairs
from kd_generative.data.maps import DIRECTIONS
from kd_generative.data.paired import PairedImages, PairSplit
from kd_generative.data.pairs import build_pairs
from kd_generative.data.photos import PhotoSource, list_sources

__all__ = ["DIRECTIONS", "PairSplit", "PairedImages", "PhotoSource", "build_pairs", "list_sources",
           "read_folder_pairs"]
