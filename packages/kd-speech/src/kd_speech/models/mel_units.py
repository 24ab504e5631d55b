"""Discrete acoustic units from k-means over log-mel frames: a cheap tokenizer beside vq-wav2vec.

Each 10 ms frame's log-mel vector (Kaldi fbank, mean-normalised per utterance so that a voice's spectral tilt
does not decide the unit) is assigned to its nearest of ``clusters`` centroids, fitted by k-means (k-means++
seeding, Lloyd iterations) on training frames. This is the first-iteration target of HuBERT (Hsu et al.,
"HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden Units", TASLP 2021,
arXiv 2106.07447), which clusters MFCC frames the same way.

Why it is here: the two-stage textual KD study needs a speech encoder whose tokens carry what was said. A
vq-wav2vec pre-trained for the few hundred CPU steps a study can afford does not get there (its tokens stay
close to chance for intents on unseen voices), while k-means units on the same audio do, in seconds. The
token stream has the same shape as vq-wav2vec's (one id per 10 ms), so everything downstream is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError, DataError
from torch import nn

from kd_speech.data.audio import SAMPLE_RATE
from kd_speech.data.features import log_mel

__all__ = ["MelUnits", "kmeans"]


def _nearest(points: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """The index of the nearest centroid of each row of ``points`` (squared Euclidean distance)."""
    out = []
    c2 = (centroids * centroids).sum(1)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk]
        out.append((c2[None, :] - 2 * p @ centroids.T).argmin(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def kmeans(points: torch.Tensor, clusters: int, iterations: int = 25, seed: int = 0) -> torch.Tensor:
    """``[clusters, dim]`` centroids of ``points`` ``[n, dim]``: k-means++ seeding then Lloyd iterations, all
    draws from ``seed``. An empty cluster is re-seeded at the point farthest from its centroid."""
    if points.dim() != 2 or len(points) < clusters:
        raise DataError("points", f"a [n, dim] matrix with n >= clusters ({clusters})", tuple(points.shape))
    generator = torch.Generator().manual_seed(seed)
    points = points.float()
    first = int(torch.randint(len(points), (1,), generator=generator))
    centroids = [points[first]]
    distance = ((points - points[first]) ** 2).sum(1)
    for _ in range(1, clusters):
        weights = distance.clamp(min=0)
        pick = int(torch.multinomial(weights / weights.sum(), 1, generator=generator)) if weights.sum() > 0 else \
            int(torch.randint(len(points), (1,), generator=generator))
        centroids.append(points[pick])
        distance = torch.minimum(distance, ((points - points[pick]) ** 2).sum(1))
    center = torch.stack(centroids)
    for _ in range(iterations):
        assign = _nearest(points, center)
        sums = torch.zeros_like(center).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=clusters).float()
        moved = sums / counts.clamp(min=1)[:, None]
        empty = counts == 0
        if empty.any():
            far = ((points - center[assign]) ** 2).sum(1).topk(int(empty.sum())).indices
            moved[empty] = points[far]
        if torch.allclose(moved, center):
            center = moved
            break
        center = moved
    return center


class MelUnits(nn.Module):
    """A k-means tokenizer of 16 kHz waveforms: ``tokens(wave) -> [frames]`` ids in ``[0, num_tokens)``.

    ``fit(waves)`` learns the centroids (kept as a buffer, so ``state_dict`` saves them)."""

    def __init__(self, clusters: int = 64, n_mels: int = 40) -> None:
        super().__init__()
        for name, value, low, high in (("clusters", clusters, 2, 4096), ("n_mels", n_mels, 8, 128)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(name, f"an integer in [{low}, {high}]", value)
        self.clusters, self.n_mels = clusters, n_mels
        self.register_buffer("centroids", torch.zeros(clusters, n_mels))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def num_tokens(self) -> int:
        """How many distinct ids ``tokens`` can give."""
        return self.clusters

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Per-utterance mean-normalised log-mel frames ``[frames, n_mels]`` of a 16 kHz waveform ``[samples]``."""
        frames = log_mel(torch.as_tensor(wave).float(), SAMPLE_RATE, self.n_mels)
        return frames - frames.mean(0, keepdim=True)

    def fit(self, waves: Sequence[torch.Tensor], iterations: int = 25, seed: int = 0,
            max_frames: int = 200_000) -> MelUnits:
        """Fit the centroids on the frames of ``waves`` (at most ``max_frames`` of them, drawn with ``seed``)."""
        if not waves:
            raise DataError("waves", "at least one waveform", 0)
        frames = torch.cat([self.features(w) for w in waves])
        if len(frames) > max_frames:
            keep = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:max_frames]
            frames = frames[keep]
        self.centroids.copy_(kmeans(frames, self.clusters, iterations, seed))
        self.fitted.fill_(True)
        return self

    @torch.no_grad()
    def tokens(self, wave: torch.Tensor) -> torch.Tensor:
        """The unit id of every frame of a 16 kHz waveform ``[samples]``."""
        if not bool(self.fitted):
            raise ConfigError("MelUnits", "fitted centroids (call fit first)", "unfitted")
        return _nearest(self.features(wave), self.centroids)
