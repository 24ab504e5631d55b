"""The input side of a pair, computed from a colour photo: a Canny edge map, a grey image, or a label map.

Every map is a pure function of the photo's pixels (no randomness), computed on the whole resized photo
before it is cropped, so crop borders do not create edges or split regions.

- ``edges``: :func:`skimage.feature.canny` on the grey image (floats in [0, 1]) with ``sigma`` 2 px and
  scikit-image's default hysteresis thresholds (0.1 and 0.2); 255 on an edge, 0 elsewhere.
- ``grey``: luminance by ITU-R BT.601 weights (:func:`skimage.color.rgb2gray` uses BT.709; BT.601 is what
  ``PIL.Image.convert("L")`` and most grey->colour work use), rounded to uint8.
- ``mask``: a colour-name segmentation. SLIC superpixels (:func:`skimage.segmentation.slic`, one per
  ``SUPERPIXEL_AREA`` pixels, compactness 10; SLIC seeds on a regular grid, so it is deterministic) give the
  regions; each region's mean CIELAB colour is assigned the nearest of :data:`COLOUR_CLASSES` (black, grey,
  white, red, brown, orange, yellow, green, sky, blue, purple, skin); the map paints each class in its
  fixed :data:`PALETTE` colour. Classes mean the same thing in every photo (a green region is class 7), like
  a coarse semantic layout; the map keeps a region's colour name, not its shade or texture.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLOUR_CLASSES", "DIRECTIONS", "EDGE_SIGMA", "PALETTE", "SUPERPIXEL_AREA", "edge_map", "grey_map",
           "input_channels", "input_map", "label_map"]

#: The input kinds, each paired with the colour photo as target.
DIRECTIONS: tuple[str, ...] = ("edges", "grey", "mask")
#: The Gaussian width of Canny's smoothing, in pixels of the resized photo.
EDGE_SIGMA = 2.0
#: About this many pixels make one superpixel of the label map.
SUPERPIXEL_AREA = 150

#: The colour names of the label map and their prototype colours (RGB); a region takes the nearest in CIELAB.
COLOUR_CLASSES: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "grey": (128, 128, 128), "white": (235, 235, 235), "red": (190, 35, 35),
    "brown": (130, 85, 45), "orange": (225, 120, 30), "yellow": (225, 205, 60), "green": (70, 140, 50),
    "sky": (120, 175, 220), "blue": (35, 55, 160), "purple": (150, 60, 150), "skin": (220, 175, 145),
}
#: The colour each class is painted in (a fixed categorical palette, one entry per colour class).
PALETTE: np.ndarray = np.array([
    (0, 0, 0), (128, 128, 128), (255, 255, 255), (230, 25, 75), (170, 110, 40), (245, 130, 48),
    (255, 225, 25), (60, 180, 75), (70, 240, 240), (0, 130, 200), (145, 30, 180), (250, 190, 212),
], dtype=np.uint8)


def input_channels(direction: str) -> int:
    """Channels of the input map of ``direction``: 1 for edges and grey, 3 for the painted label map."""
    return 3 if direction == "mask" else 1


def grey_map(photo: np.ndarray) -> np.ndarray:
    """The BT.601 luminance of a uint8 RGB photo ``(H, W, 3)`` as uint8 ``(H, W)``."""
    weights = np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(photo.astype(np.float64) @ weights), 0, 255).astype(np.uint8)


def edge_map(photo: np.ndarray, sigma: float = EDGE_SIGMA) -> np.ndarray:
    """Canny edges of the photo's grey image: uint8 ``(H, W)``, 255 on an edge and 0 elsewhere."""
    from skimage.feature import canny

    edges = canny(grey_map(photo).astype(np.float64) / 255.0, sigma=sigma)
    return edges.astype(np.uint8) * 255


def label_map(photo: np.ndarray, area: int = SUPERPIXEL_AREA) -> np.ndarray:
    """The colour-name class of each pixel (uint8 ``(H, W)``, indices into :data:`COLOUR_CLASSES`)."""
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    height, width = photo.shape[:2]
    segments = slic(photo, n_segments=max(1, height * width // area), compactness=10.0, start_label=0,
                    channel_axis=-1)
    lab = rgb2lab(photo).reshape(-1, 3)
    flat = segments.ravel()
    counts = np.bincount(flat)
    means = np.stack([np.bincount(flat, weights=lab[:, c], minlength=len(counts)) for c in range(3)], axis=1)
    means /= np.maximum(counts, 1)[:, None]
    prototypes = rgb2lab(np.array([list(COLOUR_CLASSES.values())], dtype=np.uint8))[0]
    nearest = np.argmin(((means[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=2), axis=1)
    return nearest.astype(np.uint8)[segments]


def input_map(photo: np.ndarray, direction: str) -> np.ndarray:
    """The input of ``direction`` for a uint8 RGB photo: uint8 ``(H, W, C)`` with C from :func:`input_channels`."""
    if direction == "edges":
        return edge_map(photo)[..., None]
    if direction == "grey":
        return grey_map(photo)[..., None]
    if direction == "mask":
        return PALETTE[label_map(photo)]
    from kd_core.errors import ConfigError

    raise ConfigError("direction", f"one of {', '.join(DIRECTIONS)}", direction)
