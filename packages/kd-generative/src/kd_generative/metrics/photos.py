"""The training images of the metric feature network: photos bundled inside scikit-image, cut into random crops.

Only images that ship in the scikit-image wheel are used (never those ``skimage.data`` fetches from the
network). Seven colour photos (astronaut, coffee, chelsea the cat, rocket, the Hubble deep field, an
immunohistochemistry slide, a retina) and seven grey ones (brick, grass and gravel textures, camera man, moon,
coins, text); grey ones are repeated to three channels. The task: which of the 14 photos a crop came from.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from kd_core.errors import DataError

__all__ = ["HELD_OUT", "PHOTOS", "load_photos", "random_crops", "split_photos"]

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "brick", "grass", "gravel", "camera", "moon", "coins", "text")
HELD_OUT = 0.2  # the right-hand fifth of every photo is never trained on


def load_photos(names: tuple[str, ...] = PHOTOS) -> list[torch.Tensor]:
    """Each named ``skimage.data`` photo as a float32 tensor ``[3, H, W]`` in [0, 1]."""
    try:
        import skimage.data
    except ImportError:
        raise DataError("scikit-image", "the installed scikit-image package (its bundled photos train the "
                        "metric feature network)", "not installed", hint="pip install scikit-image") from None
    photos = []
    for name in names:
        if name not in PHOTOS:
            raise DataError("names", f"photos bundled with scikit-image, from {PHOTOS}", name)
        array = np.asarray(getattr(skimage.data, name)())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        photos.append(torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float() / 255.0)
    return photos


def split_photos(photos: list[torch.Tensor], part: str) -> list[torch.Tensor]:
    """The left ``1 − HELD_OUT`` of each photo (``part="train"``) or the rest (``"held_out"``)."""
    if part not in ("train", "held_out"):
        raise DataError("part", "'train' or 'held_out'", part)
    cuts = [round(photo.shape[2] * (1.0 - HELD_OUT)) for photo in photos]
    if part == "train":
        return [photo[:, :, :cut] for photo, cut in zip(photos, cuts)]
    return [photo[:, :, cut:] for photo, cut in zip(photos, cuts)]


def _jitter(crop: torch.Tensor, colour: bool, generator: torch.Generator) -> torch.Tensor:
    """Random brightness and contrast (× 0.7–1.3), and grey for a fifth of the colour crops."""
    brightness, contrast, grey = torch.rand(3, generator=generator).tolist()
    if colour and grey < 0.2:
        crop = (crop * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True).expand(3, -1, -1)
    mean = crop.mean()
    crop = (crop - mean) * (0.7 + 0.6 * contrast) + mean
    return (crop * (0.7 + 0.6 * brightness)).clamp(0.0, 1.0)


def random_crops(photos: list[torch.Tensor], count: int, generator: torch.Generator, size: int = 32,
                 scale: tuple[int, int] = (24, 128), colour: tuple[bool, ...] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` augmented crops ``[count, 3, size, size]`` and the index of the photo each came from.

    A crop: a uniform photo, a square side in ``scale`` (capped by the photo), a uniform position, resized to
    ``size`` (antialiased bilinear), flipped left-right half the time, then brightness/contrast jitter and, for
    colour photos (``colour[i]``, default: the first seven), grey a fifth of the time. Deterministic given
    ``generator``.
    """
    colour = colour if colour is not None else tuple(i < 7 for i in range(len(photos)))
    labels = torch.randint(len(photos), (count,), generator=generator)
    crops = []
    for label in labels.tolist():
        photo = photos[label]
        height, width = photo.shape[1:]
        top_side = min(scale[1], height, width)
        side = int(torch.randint(min(scale[0], top_side), top_side + 1, (1,), generator=generator))
        top = int(torch.randint(height - side + 1, (1,), generator=generator))
        left = int(torch.randint(width - side + 1, (1,), generator=generator))
        crop = photo[:, top: top + side, left: left + side]
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        if float(torch.rand(1, generator=generator)) < 0.5:
            crop = crop.flip(2)
        crops.append(_jitter(crop, colour[label], generator))
    return torch.stack(crops), labels
