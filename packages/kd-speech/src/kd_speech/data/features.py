"""Log-mel features at 16 kHz for audio at any sample rate: ``[frames, bins]`` with a 25 ms window, 10 ms hop.

``kind="fbank"`` (default): Kaldi-compatible log mel filterbanks (``torchaudio.compliance.kaldi.fbank``, no
dither, so deterministic), ``1 + (samples - 400) // 160`` frames. ``kind="mel"``: the natural log of a
``torchaudio.transforms.MelSpectrogram`` power spectrogram (centred frames), ``1 + samples // 160`` frames.
Input at another rate is resampled to 16 kHz first; clips shorter than one window are zero-padded to one.
"""

from __future__ import annotations

import functools

import torch
import torchaudio
from kd_core.errors import ConfigError

from kd_speech.data.audio import SAMPLE_RATE, to_rate

__all__ = ["FEATURE_KINDS", "HOP", "WINDOW", "LogMel", "log_mel", "num_frames"]

WINDOW = 400
"""Samples per analysis window at 16 kHz (25 ms)."""
HOP = 160
"""Samples between frames at 16 kHz (10 ms)."""
FEATURE_KINDS: tuple[str, ...] = ("fbank", "mel")


@functools.lru_cache(maxsize=8)
def _mel_transform(n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW,
                                                hop_length=HOP, n_mels=n_mels)


def num_frames(samples: int, kind: str = "fbank") -> int:
    """The number of frames ``log_mel`` gives for ``samples`` samples at 16 kHz."""
    samples = max(samples, WINDOW)
    return 1 + (samples - WINDOW) // HOP if kind == "fbank" else 1 + samples // HOP


def log_mel(waveform: torch.Tensor, sample_rate: int, n_mels: int = 80, kind: str = "fbank") -> torch.Tensor:
    """Log-mel features ``[frames, n_mels]`` (float32) of a waveform (``[samples]`` or ``[channels, samples]``,
    in [-1, 1]) at ``sample_rate`` Hz."""
    if kind not in FEATURE_KINDS:
        raise ConfigError("kind", f"one of {FEATURE_KINDS}", kind)
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not 1 <= n_mels <= 128:
        raise ConfigError("n_mels", "an integer number of mel bins in [1, 128]", n_mels)
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (1, 2) or waveform.shape[-1] == 0:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ConfigError("waveform", "a non-empty tensor [samples] or [channels, samples]", shape)
    mono = waveform.float().mean(dim=0) if waveform.ndim == 2 else waveform.float()
    mono = to_rate(mono, sample_rate, SAMPLE_RATE)
    if mono.numel() < WINDOW:
        mono = torch.nn.functional.pad(mono, (0, WINDOW - mono.numel()))
    if kind == "fbank":
        return torchaudio.compliance.kaldi.fbank(mono[None] * 32768.0, num_mel_bins=n_mels, frame_length=25.0,
                                                 frame_shift=10.0, dither=0.0, sample_frequency=SAMPLE_RATE)
    with torch.no_grad():
        return torch.log(_mel_transform(n_mels)(mono) + 1e-6).T.contiguous()


class LogMel:
    """``log_mel`` as a callable with fixed settings (a ``SpeechDataset`` transform)."""

    def __init__(self, n_mels: int = 80, kind: str = "fbank") -> None:
        self.n_mels, self.kind = n_mels, kind
        log_mel(torch.zeros(WINDOW), SAMPLE_RATE, n_mels, kind)  # checks the settings now

    def __call__(self, waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Features ``[frames, n_mels]`` of one waveform."""
        return log_mel(waveform, sample_rate, self.n_mels, self.kind)

    def __repr__(self) -> str:
        return f"LogMel(n_mels={self.n_mels}, kind={self.kind!r})"
