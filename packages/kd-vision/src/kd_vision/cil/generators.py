"""An offline stand-in for a broad pretrained image generator: one Gaussian mixture per class.

Jodelet et al. (arXiv:2306.17560) draw old-class images from a frozen Stable Diffusion model that was
pretrained on web data covering every class. Offline, the same role is played by per-class Gaussian
mixtures (scikit-learn ``GaussianMixture``, 5 components, diagonal covariance) on flattened images,
fitted **once, before the stream**, on a split of all classes that is disjoint from the stream's data and
test set, and then frozen. Their samples are blurry prototypes plus independent pixel noise: visibly
synthetic, which stands in for the paper's domain gap between generated and real images.

The class implements :class:`kd_core.generators.ImageGenerator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from kd_core.errors import ConfigError
from kd_core.generators import check_classes
from sklearn.mixture import GaussianMixture
from torch.utils.data import DataLoader, Dataset

__all__ = ["ClassMixture", "GaussianMixtureGenerator"]


@dataclass(frozen=True)
class ClassMixture:
    """One class's fitted mixture: component weights ``[K]``, means and standard deviations ``[K, D]``."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


class GaussianMixtureGenerator:
    """Per-class diagonal Gaussian mixtures over flattened images; frozen once built by :meth:`fit`.

    ``generate(classes, per_class, seed)`` draws a component by its weight, then a Gaussian sample from
    it, for each image (numpy's generator seeded by ``(seed, class)``, so a class's samples do not depend
    on which other classes are requested). ``clip`` (low, high) bounds pixel values, e.g. the normalised
    range of real pixels.
    """

    def __init__(self, mixtures: dict[int, ClassMixture], image_shape: Sequence[int],
                 clip: tuple[float, float] | None = None) -> None:
        if not mixtures:
            raise ConfigError("mixtures", "at least one fitted class", mixtures)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = max(mixtures) + 1
        self._mixtures = dict(mixtures)
        self.clip = clip

    @property
    def classes(self) -> list[int]:
        """The classes this generator was fitted on."""
        return sorted(self._mixtures)

    @classmethod
    def fit(cls, dataset: Dataset, components: int = 5, seed: int = 0, clip: tuple[float, float] | None = None,
            max_iter: int = 100) -> GaussianMixtureGenerator:
        """Fit one ``components``-component diagonal mixture per class present in ``dataset`` (items
        ``{"input": [C, H, W], "label": int}``) and return the frozen generator."""
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ConfigError("components", "an integer >= 1", components)
        batches = list(DataLoader(dataset, batch_size=1024))
        if not batches:
            raise ConfigError("dataset", "at least one image to fit the generator on", 0)
        images = torch.cat([b["input"] for b in batches]).double()
        labels = torch.cat([torch.as_tensor(b["label"]) for b in batches]).numpy()
        flat = images.reshape(len(images), -1).numpy()
        mixtures = {}
        for c in sorted(set(labels.tolist())):
            rows = flat[labels == c]
            if len(rows) < components:
                raise ConfigError("dataset", f"at least {components} images of class {c} (one per component)",
                                  len(rows))
            gm = GaussianMixture(n_components=components, covariance_type="diag", random_state=seed,
                                 max_iter=max_iter).fit(rows)
            mixtures[int(c)] = ClassMixture(_read_only(gm.weights_), _read_only(gm.means_),
                                            _read_only(np.sqrt(gm.covariances_)))
        return cls(mixtures, tuple(images.shape[1:]), clip=clip)

    def generate(self, classes: Sequence[int], per_class: int, seed: int) -> dict[str, torch.Tensor]:
        """``per_class`` images of each class in ``classes``: ``{"input": [N, C, H, W], "label": [N]}``."""
        wanted = check_classes(classes, self.num_classes)
        missing = [c for c in wanted if c not in self._mixtures]
        if missing:
            raise ConfigError("classes", f"classes the generator was fitted on ({self.classes})", missing)
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ConfigError("per_class", "an integer >= 1", per_class)
        images = []
        for c in wanted:
            mixture = self._mixtures[c]
            rng = np.random.default_rng([int(seed), c])
            component = rng.choice(len(mixture.weights), size=per_class, p=mixture.weights / mixture.weights.sum())
            noise = rng.standard_normal((per_class, mixture.means.shape[1]))
            sample = mixture.means[component] + mixture.stds[component] * noise
            if self.clip is not None:
                sample = np.clip(sample, *self.clip)
            images.append(sample)
        stacked = torch.from_numpy(np.concatenate(images)).float().reshape(-1, *self.image_shape)
        labels = torch.tensor(wanted, dtype=torch.long).repeat_interleave(per_class)
        return {"input": stacked, "label": labels}
