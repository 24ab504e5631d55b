"""A small CNN trained here, offline, whose activations embed images for the perceptual and Fréchet distances.

LPIPS (Zhang et al., CVPR 2018) and FID (Heusel et al., NeurIPS 2017) use ImageNet-trained VGG/AlexNet and
Inception weights, which cannot be downloaded here. In their place: ``FeatureNetwork``, three stages of two
3 × 3 conv-BN-ReLU layers (16, 32, 64 channels; max-pooling between stages), trained to tell which of 14
photos bundled with scikit-image a random 32 × 32 crop came from (``photos.py``: crops of 24–128 px resized
to 32, flips, brightness/contrast jitter, grey crops of colour photos), from the left four fifths of each
photo. Training is seeded and runs on one CPU thread (about a minute: ``DEFAULT_STEPS`` = 200 Adam steps of
128 fresh crops); the weights are cached once under
``$KD_DATA_HOME/teachers/generative-metric-features-<digest>.safetensors``. With the defaults it tells 82 % of
crops from the never-trained right fifths apart (chance: 7 %), so its features carry colour, texture and
structure of natural images, if far less than an ImageNet network's.

Its distances are comparable only with other numbers from this toolkit computed by the same network (same
steps and seed): they are not FID or LPIPS values and cannot be compared with published ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kd_core.datacache import cached_model
from kd_core.errors import ConfigError
from torch import nn

from kd_generative.metrics.photos import HELD_OUT, PHOTOS, load_photos, random_crops, split_photos

__all__ = ["DEFAULT_SEED", "DEFAULT_STEPS", "FeatureNetwork", "feature_network", "train_feature_network"]

DEFAULT_STEPS = 200
DEFAULT_SEED = 0
BATCH = 128
CROP = 32
FORMAT = 1  # bump when the data, augmentation or training loop changes: a new cache key


def _stage(inputs: int, outputs: int) -> nn.Sequential:
    def conv(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*conv(inputs, outputs), *conv(outputs, outputs))


class FeatureNetwork(nn.Module):
    """Three conv stages on RGB images in [0, 1] of any size ≥ 4 × 4; a linear head used only in training."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), classes: int = len(PHOTOS)) -> None:
        super().__init__()
        chans = (3, *widths)
        self.stages = nn.ModuleList(_stage(chans[i], chans[i + 1]) for i in range(len(widths)))
        self.head = nn.Linear(widths[-1], classes)
        self.register_buffer("centre", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.provenance = ""

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The activations ``[N, C_l, H_l, W_l]`` after each stage for ``images`` ``[N, 3, H, W]`` in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError("images", "RGB images [N, 3, H, W] in [0, 1]", tuple(images.shape))
        x = (images - self.centre) * 4.0
        features = []
        for index, stage in enumerate(self.stages):
            if index:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            features.append(x)
        return features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The global average of the last stage, ``[N, 64]``: the space of the Fréchet distance."""
        return self(images)[-1].mean(dim=(2, 3))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``[N, 14]`` for which training photo each image was cropped from."""
        return self.head(self.embed(images))


def train_feature_network(model: FeatureNetwork, steps: int = DEFAULT_STEPS, seed: int = DEFAULT_SEED
                          ) -> FeatureNetwork:
    """Train ``model`` in place for ``steps`` Adam steps (lr 3e-3, cosine to 0) on fresh crops; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    photos = split_photos(load_photos(), "train")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        images, labels = random_crops(photos, BATCH, generator, size=CROP)
        loss = F.cross_entropy(model.logits(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def feature_network(steps: int = DEFAULT_STEPS, seed: int = DEFAULT_SEED, reuse: bool = True) -> FeatureNetwork:
    """The metric feature network in eval mode with frozen weights, trained once and then read from the cache.

    ``steps`` and ``seed`` choose the training (and the cache file); ``reuse=False`` retrains and overwrites it.
    ``provenance`` on the result says whether it was trained in this call or read, and from where.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError("steps", "an int >= 1", steps)
    import skimage

    def build() -> FeatureNetwork:
        torch.manual_seed(seed)
        return FeatureNetwork()

    def train(model: FeatureNetwork) -> FeatureNetwork:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # deterministic and as fast as more threads for a net this small
        try:
            return train_feature_network(model, steps, seed)
        finally:
            torch.set_num_threads(threads)

    model, note = cached_model(build, train, "generative-metric-features", reuse, format=FORMAT, steps=steps,
                               seed=seed, batch=BATCH, crop=CROP, photos=PHOTOS, held_out=HELD_OUT,
                               scikit_image=skimage.__version__)
    model.provenance = note
    return model.eval().requires_grad_(False)
