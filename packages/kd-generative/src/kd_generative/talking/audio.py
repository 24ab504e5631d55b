"""Mel spectrograms as Wav2Lip feeds them, computed with torchaudio, and the mel window of a video window.

Settings (Wav2Lip's published audio hyper-parameters): 16 kHz, pre-emphasis 0.97, 800-sample FFT and window,
hop 200 (80 mel frames per second), 80 Slaney mels from 55 to 7600 Hz, amplitude in dB minus a 20 dB
reference, clipped at -100 dB and mapped linearly to ``[-4, 4]``. A window of ``T = 5`` video frames at
25 fps (0.2 s) is 16 mel frames, starting at mel index ``int(80 * frame / fps)``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from kd_core.errors import ConfigError

from kd_generative.talking.speech import SAMPLE_RATE

__all__ = ["MEL_PER_SECOND", "MEL_STEPS", "N_MELS", "mel_spectrogram", "mel_start", "mel_window"]

N_MELS = 80
MEL_PER_SECOND = 80  # SAMPLE_RATE / hop 200
MEL_STEPS = 16  # mel frames per window of 5 video frames at 25 fps


@cache
def _transform() -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=800, win_length=800, hop_length=200, f_min=55.0, f_max=7600.0,
        n_mels=N_MELS, power=1.0, norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """``(80, frames)`` float32 normalised log-mel of 16 kHz ``samples`` (one frame per 12.5 ms)."""
    x = torch.as_tensor(np.asarray(samples, np.float32))
    if x.ndim != 1 or x.numel() < 800:
        raise ConfigError("samples", "a 1-D waveform of at least 800 samples (50 ms at 16 kHz)", tuple(x.shape))
    x = torch.cat([x[:1], x[1:] - 0.97 * x[:-1]])  # pre-emphasis
    with torch.no_grad():
        amplitude = _transform()(x)
    db = 20 * torch.log10(amplitude.clamp_min(1e-5)) - 20.0
    normalised = (8.0 * (db + 100.0) / 100.0 - 4.0).clamp(-4.0, 4.0)
    return normalised.numpy().astype(np.float32)


def mel_start(frame: int, fps: float = 25.0) -> int:
    """The mel index where the audio of video frame ``frame`` starts."""
    return int(MEL_PER_SECOND * (frame / fps))


def mel_window(mel: np.ndarray, frame: int, fps: float = 25.0, steps: int = MEL_STEPS) -> np.ndarray | None:
    """``mel[:, start:start + steps]`` for the video window starting at ``frame``; ``None`` past either end."""
    start = mel_start(frame, fps)
    if frame < 0 or start + steps > mel.shape[1]:
        return None
    return mel[:, start:start + steps]
