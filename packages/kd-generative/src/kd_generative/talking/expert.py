"""A SyncNet-style lip-sync expert (as in Wav2Lip's expert discriminator): embeddings of the lower half of
T stacked frames and of the matching mel window, ReLU'd and L2-normalised, whose cosine similarity is the
probability that they are in sync; trained with binary cross-entropy on in-sync and off-sync pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kd_core import datacache
from kd_core.errors import ConfigError
from torch import nn

from kd_generative.talking.blocks import AudioEncoder, ConvBlock, Residual
from kd_generative.talking.dataset import TalkingWindows, lower_half

__all__ = ["SyncExpert", "SyncPairs", "expert_accuracy", "sync_probability", "train_expert", "trained_expert"]


class SyncExpert(nn.Module):
    """Face: the lower halves of ``frames`` frames stacked on channels, ``(B, 3T, S/2, S)``; audio: ``(B, 1, 80,
    16)``. ``forward`` returns both embeddings ``(B, embed)`` (non-negative, unit norm). ``size`` must be
    3 * 2**k (24, 48, 96)."""

    def __init__(self, size: int = 48, frames: int = 5, width: int = 16, audio_width: int = 16,
                 embed: int = 64, residuals: int = 0) -> None:
        super().__init__()
        k = round(math.log2(size / 3)) if size >= 12 else -1
        if k < 2 or 3 * 2**k != size:
            raise ConfigError("size", "3 * 2**k with k >= 2 (12, 24, 48, 96)", size)
        self.size, self.frames = size, frames
        layers: list[nn.Module] = [ConvBlock(3 * frames, width, 5, 1, 2)]
        c = width
        for _ in range(k - 1):  # (S/2, S) -> (3, 6)
            layers += [ConvBlock(c, min(2 * c, 8 * width), 3, 2, 1)]
            c = min(2 * c, 8 * width)
            layers += [Residual(c) for _ in range(residuals)]
        layers += [nn.Conv2d(c, embed, (3, 6)), nn.ReLU()]
        self.face = nn.Sequential(*layers)
        self.audio = nn.Sequential(AudioEncoder(audio_width, embed, residuals), nn.Conv2d(embed, embed, 1),
                                   nn.ReLU())

    def embed_face(self, lower: torch.Tensor) -> torch.Tensor:
        """``(B, 3T, S/2, S)`` (or ``(B, T, 3, S/2, S)``) lower halves -> unit embeddings."""
        if lower.ndim == 5:
            lower = lower.flatten(1, 2)
        return F.normalize(self.face(lower).flatten(1), dim=1, eps=1e-6)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 80, 16)`` mel windows -> unit embeddings."""
        return F.normalize(self.audio(mel).flatten(1), dim=1, eps=1e-6)

    def forward(self, lower: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both embeddings."""
        return self.embed_face(lower), self.embed_audio(mel)


def sync_probability(face: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the two embeddings, clamped into (0, 1): the in-sync probability."""
    return F.cosine_similarity(face, audio, dim=1).clamp(1e-6, 1 - 1e-6)


class SyncPairs(torch.utils.data.Dataset):
    """Each window twice: item ``2i`` pairs window ``i`` with its own mel (label 1), item ``2i + 1`` with the
    mel of a window of the same clip at least ``min_offset`` frames away (label 0), chosen with ``seed``."""

    def __init__(self, windows: TalkingWindows, seed: int = 0, min_offset: int = 5) -> None:
        self.windows, self.min_offset = windows, min_offset
        rng = np.random.default_rng(seed)
        self.wrong: list[int] = []
        for c, s in windows.items:
            choices = [o for o in windows.valid_starts(c) if abs(o - s) >= min_offset]
            self.wrong.append(int(rng.choice(choices)) if choices else -1)

    def __len__(self) -> int:
        return 2 * len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, off = divmod(index, 2)
        c, s = self.windows.items[i]
        data, t = self.windows.data, self.windows.data.config.frames
        frames = data.clip_frames(c)[s:s + t].float() / 255
        start = self.wrong[i] if off and self.wrong[i] >= 0 else s
        label = torch.tensor(float(start == s))
        return lower_half(frames).flatten(0, 1), data.mel_window(data.clips[c], start), label


def _loader(pairs: SyncPairs, batch: int, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(pairs, batch_size=batch, shuffle=shuffle, generator=generator)


def train_expert(model: SyncExpert, pairs: SyncPairs, steps: int = 300, batch: int = 32, lr: float = 1e-3,
                 seed: int = 0) -> SyncExpert:
    """Adam on the BCE of :func:`sync_probability` against the pair labels, for ``steps`` batches; seeded."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    while done < steps:
        for lower, mel, label in _loader(pairs, batch, True, seed + done):
            loss = F.binary_cross_entropy(sync_probability(*model(lower, mel)), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done >= steps:
                break
    return model.eval()


@torch.no_grad()
def expert_accuracy(model: SyncExpert, pairs: SyncPairs, batch: int = 64) -> float:
    """Share of pairs whose probability is on the right side of 0.5."""
    model.eval()
    right = total = 0
    for lower, mel, label in _loader(pairs, batch, False, 0):
        p = sync_probability(*model(lower, mel))
        right += int(((p > 0.5).float() == label).sum())
        total += len(label)
    return right / max(total, 1)


def trained_expert(train: TalkingWindows, steps: int = 300, seed: int = 0, reuse: bool = True,
                   **model_options: Any) -> tuple[SyncExpert, str]:
    """A :class:`SyncExpert` trained on ``train``'s pairs, cached by ``kd_core.datacache.cached_model`` under
    what determines it (the data manifest, steps, seed, options). Returns the model and where it came from."""
    config = train.data.config

    def build() -> SyncExpert:
        torch.manual_seed(seed)
        return SyncExpert(size=config.size, frames=config.frames, **model_options)

    def fit(model: SyncExpert) -> SyncExpert:
        return train_expert(model, SyncPairs(train, seed=seed), steps=steps, seed=seed)

    manifest = datacache.digest(data=train.data.manifest(), items=train.items)
    model, note = datacache.cached_model(build, fit, "sync-expert", reuse, data=manifest, steps=steps, seed=seed,
                                         options=model_options)
    return model.eval(), note
