"""Log-mel / fbank features: [frames, bins] at 16 kHz whatever the input sample rate."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import KDError
from kd_speech.data.audio import to_rate
from kd_speech.data.features import LogMel, log_mel, num_frames

RATES = (8000, 16000, 22050, 44100)


def _tone(rate: int, seconds: float = 1.0, hz: float = 1000.0) -> torch.Tensor:
    t = torch.arange(int(rate * seconds), dtype=torch.float32) / rate
    return 0.5 * torch.sin(2 * math.pi * hz * t)


@pytest.mark.parametrize("kind", ["fbank", "mel"])
@pytest.mark.parametrize("rate", RATES)
def test_feature_shape_is_frames_by_bins_at_any_rate(rate: int, kind: str) -> None:
    features = log_mel(_tone(rate), rate, kind=kind)
    assert features.shape == (num_frames(16000, kind), 80)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    assert features.shape[0] == (98 if kind == "fbank" else 101)


@pytest.mark.parametrize("rate", RATES)
def test_a_tone_lands_in_the_same_mel_bin_at_every_rate(rate: int) -> None:
    reference = int(log_mel(_tone(16000), 16000).mean(0).argmax())
    assert abs(int(log_mel(_tone(rate), rate).mean(0).argmax()) - reference) <= 1


def test_bins_channels_and_short_clips() -> None:
    assert LogMel(n_mels=40)(_tone(16000, 0.5)).shape == (num_frames(8000), 40)
    stereo = torch.stack([_tone(22050), _tone(22050)])
    assert log_mel(stereo, 22050).shape == (98, 80)
    assert log_mel(torch.full((100,), 0.1), 16000).shape == (1, 80)
    assert to_rate(_tone(44100), 44100).shape == (16000,)


def test_bad_feature_arguments_are_kd_errors() -> None:
    with pytest.raises(KDError, match="kind"):
        log_mel(_tone(16000), 16000, kind="mfcc")
    with pytest.raises(KDError, match="waveform"):
        log_mel(torch.zeros(0), 16000)
    with pytest.raises(KDError, match="sample_rate"):
        log_mel(_tone(16000), 0)
