"""NaturalInversion's one-to-one generator: ``z ⊕ one-hot(class) → linear → upsampling conv blocks → image``.

Kim et al., "NaturalInversion: Data-Free Image Synthesis Improving Real-World Consistency", AAAI 2022,
arXiv:2306.16661. A fresh generator is built for every batch of synthetic images and optimised for
that batch only (it "adds non-linearity to the optimisation"); it is never reused.

Layout for an image ``[C, H, W]``: a linear map to ``width × ⌈H/4⌉ × ⌈W/4⌉``; BN, LeakyReLU(0.2),
2× upsample, 3×3 conv ``width → width``; BN, LeakyReLU, 2× upsample, 3×3 conv ``width → width/2``;
BN, LeakyReLU, 3×3 conv ``width/2 → C``; a final resize when H or W is not a multiple of 4.
With ``width = 128`` and a 32×32 image this is the paper's generator (128×8×8 seed map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["OneToOneGenerator"]


class OneToOneGenerator(nn.Module):
    """Maps latents ``z`` ``[B, latent_dim]`` and labels ``[B]`` to images ``[B, C, H, W]`` (no output squashing)."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int], latent_dim: int = 1024,
                 width: int = 128) -> None:
        super().__init__()
        for name, value, minimum in (("num_classes", num_classes, 2), ("latent_dim", latent_dim, 1),
                                     ("width", width, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, f"an integer >= {minimum}", value)
        if len(image_shape) != 3 or any(not isinstance(s, int) or s < 1 for s in image_shape):
            raise ConfigError("image_shape", "(channels, height, width) of positive integers", image_shape)
        self.num_classes, self.image_shape, self.latent_dim = num_classes, tuple(image_shape), latent_dim
        channels, height, width_px = image_shape
        self.seed_size = (math.ceil(height / 4), math.ceil(width_px / 4))
        self.width = width
        self.linear = nn.Linear(latent_dim + num_classes, width * self.seed_size[0] * self.seed_size[1])
        half = max(width // 2, 1)
        self.blocks = nn.Sequential(
            nn.BatchNorm2d(width), nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width), nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2),
            nn.Conv2d(width, half, 3, padding=1),
            nn.BatchNorm2d(half), nn.LeakyReLU(0.2),
            nn.Conv2d(half, channels, 3, padding=1),
        )
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` for latents ``z`` and integer ``labels``."""
        code = torch.cat([z, F.one_hot(labels.long(), self.num_classes).to(z.dtype)], dim=1)
        seed = self.linear(code).view(z.shape[0], self.width, *self.seed_size)
        images = self.blocks(seed)
        if tuple(images.shape[-2:]) != self.image_shape[1:]:
            images = F.interpolate(images, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return images
