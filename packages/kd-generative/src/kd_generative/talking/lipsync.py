"""Lip-sync scores in the manner of LSE-D / LSE-C (SyncNet-based): for a clip, the expert's mean distance
between video-window and audio-window embeddings at each audio offset ``-k..k`` frames; LSE-D is the least
mean distance, LSE-C the median minus that least distance (how clearly one offset wins), and the offset the
argmin. Offset ``d`` pairs video window ``s`` with the audio of window ``s + d`` (``d > 0``: the video lags).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from kd_core.errors import ConfigError

from kd_generative.talking.audio import MEL_STEPS, mel_start
from kd_generative.talking.dataset import lower_half
from kd_generative.talking.expert import SyncExpert

__all__ = ["LipSync", "lip_sync"]


@dataclass(frozen=True)
class LipSync:
    """``distance`` (LSE-D, lower is better), ``confidence`` (LSE-C, higher is better), the best ``offset`` in
    frames, and the mean distance at every offset (``offsets`` -> ``curve``)."""

    distance: float
    confidence: float
    offset: int
    offsets: tuple[int, ...]
    curve: tuple[float, ...]


@torch.no_grad()
def lip_sync(expert: SyncExpert, frames: torch.Tensor, mel: np.ndarray | torch.Tensor, max_offset: int = 6,
             fps: float = 25.0, batch: int = 128) -> LipSync:
    """Score ``frames`` ``(N, 3, S, S)`` in [0, 1] against the clip's whole mel ``(80, M)`` with ``expert``."""
    mel = torch.as_tensor(np.asarray(mel, np.float32))
    t = expert.frames
    if frames.ndim != 4 or frames.shape[0] < t or frames.shape[-1] != expert.size:
        raise ConfigError("frames", f"(N >= {t}, 3, {expert.size}, {expert.size}) frames", tuple(frames.shape))
    if isinstance(max_offset, bool) or not isinstance(max_offset, int) or max_offset < 1:
        raise ConfigError("max_offset", "an integer >= 1", max_offset)
    expert.eval()
    starts = list(range(frames.shape[0] - t + 1))
    audio_starts = [s for s in range(-max_offset, len(starts) + max_offset)
                    if s >= 0 and mel_start(s, fps) + MEL_STEPS <= mel.shape[1]]
    windows = torch.stack([lower_half(frames[s:s + t]).flatten(0, 1) for s in starts])
    video = torch.cat([expert.embed_face(windows[i:i + batch]) for i in range(0, len(starts), batch)])
    mels = torch.stack([mel[:, mel_start(s, fps):mel_start(s, fps) + MEL_STEPS] for s in audio_starts]).unsqueeze(1)
    audio = torch.cat([expert.embed_audio(mels[i:i + batch]) for i in range(0, len(audio_starts), batch)])
    index = {s: i for i, s in enumerate(audio_starts)}
    offsets = tuple(range(-max_offset, max_offset + 1))
    curve = []
    for d in offsets:
        pairs = [(s, index[s + d]) for s in starts if s + d in index]
        if not pairs:
            raise ConfigError("frames", f"a clip longer than the offset range ({max_offset} frames)", len(starts))
        v = video[[p[0] for p in pairs]]
        a = audio[[p[1] for p in pairs]]
        curve.append(float((v - a).norm(dim=1).mean()))
    best = int(np.argmin(curve))
    return LipSync(distance=curve[best], confidence=float(np.median(curve)) - curve[best], offset=offsets[best],
                   offsets=offsets, curve=tuple(curve))
