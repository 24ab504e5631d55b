"""Noise and reverberation augmentation with torchaudio, deterministic given a seed.

``add_noise`` mixes white Gaussian noise (or a given noise clip) in at an exact signal-to-noise ratio
(``torchaudio.functional.add_noise``). ``reverberate`` convolves with a synthetic room impulse response:
a direct path followed by Gaussian noise under an exponential envelope that decays by 60 dB in ``rt60``
seconds (``torchaudio.functional.fftconvolve``). Both keep the length; ``Augment`` applies either at random
settings drawn from a per-call seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from kd_core.errors import ConfigError

from kd_speech.data.audio import SAMPLE_RATE

__all__ = ["Augment", "add_noise", "measured_snr", "reverberate", "synthetic_rir"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check_waveform(waveform: torch.Tensor) -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 1 or waveform.numel() == 0:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ConfigError("waveform", "a non-empty 1-D tensor [samples]", shape)
    return waveform.float()


def add_noise(waveform: torch.Tensor, snr_db: float, seed: int = 0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``waveform`` plus noise scaled to ``snr_db`` dB below it: white Gaussian noise from ``seed``, or ``noise``
    (a 1-D clip, tiled or cut to the waveform's length)."""
    waveform = _check_waveform(waveform)
    if not math.isfinite(snr_db):
        raise ConfigError("snr_db", "a finite signal-to-noise ratio in dB", snr_db)
    length = waveform.numel()
    if noise is None:
        noise = torch.randn(length, generator=_generator(seed))
    else:
        noise = _check_waveform(noise)
        noise = noise.repeat(math.ceil(length / noise.numel()))[:length]
    if float(noise.pow(2).sum()) == 0.0:
        raise ConfigError("noise", "a noise clip that is not all zeros", "silence")
    mixed = AF.add_noise(waveform[None], noise[None].to(waveform.dtype), torch.tensor([float(snr_db)]))
    return mixed[0]


def measured_snr(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """The signal-to-noise ratio in dB of ``noisy`` against ``clean`` (10·log10 of their energy ratio)."""
    residual = (noisy - clean).double().pow(2).sum()
    return float(10 * torch.log10(clean.double().pow(2).sum() / residual))


def synthetic_rir(sample_rate: int = SAMPLE_RATE, rt60: float = 0.4, seed: int = 0) -> torch.Tensor:
    """A room impulse response ``rt60`` seconds long: 1 (the direct path) then exponentially decaying noise."""
    if not 0.05 <= rt60 <= 3.0:
        raise ConfigError("rt60", "a reverberation time in [0.05, 3] seconds", rt60)
    length = max(2, int(rt60 * sample_rate))
    time = torch.arange(length, dtype=torch.float32) / sample_rate
    tail = torch.randn(length, generator=_generator(seed)) * torch.exp(-math.log(1000.0) * time / rt60)
    tail[0] = 0.0
    tail = tail * (0.5 / tail.norm().clamp_min(1e-12))  # the tail carries a quarter of the direct energy
    tail[0] = 1.0
    return tail


def reverberate(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE, rt60: float = 0.4, seed: int = 0,
                rir: torch.Tensor | None = None) -> torch.Tensor:
    """``waveform`` convolved with ``rir`` (default: ``synthetic_rir(sample_rate, rt60, seed)``), same length and
    same RMS as the input (peak-limited to 1)."""
    waveform = _check_waveform(waveform)
    rir = synthetic_rir(sample_rate, rt60, seed) if rir is None else _check_waveform(rir)
    wet = AF.fftconvolve(waveform, rir.to(waveform.dtype))[: waveform.numel()]
    wet = wet * (waveform.norm() / wet.norm().clamp_min(1e-12))
    peak = float(wet.abs().max())
    return wet / peak if peak > 1.0 else wet


@dataclass(frozen=True)
class Augment:
    """Random noise and reverberation: with probability ``p_reverb`` a room of RT60 drawn from ``rt60``,
    then with probability ``p_noise`` white noise at an SNR drawn from ``snr_db``; the same ``seed`` gives the
    same result."""

    snr_db: tuple[float, float] = (5.0, 20.0)
    rt60: tuple[float, float] = (0.2, 0.6)
    p_noise: float = 0.5
    p_reverb: float = 0.5
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        for name in ("p_noise", "p_reverb"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, "a probability in [0, 1]", getattr(self, name))
        for name in ("snr_db", "rt60"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ConfigError(name, "a (low, high) range with low <= high", getattr(self, name))

    def __call__(self, waveform: torch.Tensor, seed: int) -> torch.Tensor:
        """``waveform`` augmented with settings drawn from ``seed``."""
        draws = torch.rand(4, generator=_generator(seed)).tolist()
        if draws[0] < self.p_reverb:
            rt60 = self.rt60[0] + draws[1] * (self.rt60[1] - self.rt60[0])
            waveform = reverberate(waveform, self.sample_rate, rt60, seed=seed)
        if draws[2] < self.p_noise:
            snr = self.snr_db[0] + draws[3] * (self.snr_db[1] - self.snr_db[0])
            waveform = add_noise(waveform, snr, seed=seed + 1)
        return waveform
