"""The random jitter of model inversion: a circular shift of up to ±``limit`` pixels and a horizontal flip.

One draw per call, shared by the whole batch (as DeepInversion and NaturalInversion do), from
torch's global generator, so a seeded run repeats.
"""

from __future__ import annotations

import torch
from kd_core.errors import ConfigError

__all__ = ["jitter"]


def jitter(images: torch.Tensor, limit: int = 2, flip: bool = True) -> torch.Tensor:
    """``images`` ``[B, C, H, W]`` rolled by a random (dy, dx) in [−limit, limit]², then flipped left-right
    with probability 1/2 when ``flip``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError("jitter", "an integer number of pixels >= 0", limit)
    if limit:
        dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,)))
        images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
    if flip and bool(torch.rand(()) < 0.5):
        images = torch.flip(images, dims=(3,))
    return images
