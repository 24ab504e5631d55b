"""Noise at a requested SNR and synthetic reverberation: same length, changed signal, deterministic."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import KDError
from kd_speech.data.augment import Augment, add_noise, measured_snr, reverberate, synthetic_rir


def _speechlike(seconds: float = 1.0, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float32) / rate
    envelope = 0.5 * (1 + torch.sin(2 * math.pi * 3 * t))
    return 0.3 * envelope * (torch.sin(2 * math.pi * 220 * t) + 0.5 * torch.sin(2 * math.pi * 660 * t))


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr: float) -> None:
    clean = _speechlike()
    noisy = add_noise(clean, snr, seed=5)
    assert noisy.shape == clean.shape
    assert not torch.equal(noisy, clean)
    assert measured_snr(clean, noisy) == pytest.approx(snr, abs=0.01)
    assert torch.equal(noisy, add_noise(clean, snr, seed=5))
    assert not torch.equal(noisy, add_noise(clean, snr, seed=6))


def test_a_given_noise_clip_is_tiled_to_length() -> None:
    clean = _speechlike()
    noisy = add_noise(clean, 5.0, noise=torch.randn(3000, generator=torch.Generator().manual_seed(0)))
    assert noisy.shape == clean.shape
    assert measured_snr(clean, noisy) == pytest.approx(5.0, abs=0.01)


def test_reverberation_keeps_length_and_level_and_smears_the_signal() -> None:
    clean = _speechlike()
    wet = reverberate(clean, 16000, rt60=0.5, seed=1)
    assert wet.shape == clean.shape
    assert float(wet.norm()) == pytest.approx(float(clean.norm()), rel=1e-4)
    assert measured_snr(clean, wet) < 20.0  # audibly changed
    assert torch.equal(wet, reverberate(clean, 16000, rt60=0.5, seed=1))
    rir = synthetic_rir(16000, rt60=0.5, seed=1)
    assert rir.shape == (8000,) and float(rir[0]) == 1.0
    tail = rir[1:].abs()
    assert float(tail[:800].mean()) > 10 * float(tail[-800:].mean())  # decays


def test_augment_is_deterministic_per_seed_and_keeps_length() -> None:
    augment = Augment(p_noise=1.0, p_reverb=1.0)
    clean = _speechlike()
    assert torch.equal(augment(clean, 7), augment(clean, 7))
    assert not torch.equal(augment(clean, 7), augment(clean, 8))
    assert augment(clean, 7).shape == clean.shape
    assert torch.equal(Augment(p_noise=0.0, p_reverb=0.0)(clean, 7), clean)


def test_bad_augmentation_arguments_are_kd_errors() -> None:
    with pytest.raises(KDError, match="snr_db"):
        add_noise(_speechlike(), float("nan"))
    with pytest.raises(KDError, match="rt60"):
        synthetic_rir(16000, rt60=10.0)
    with pytest.raises(KDError, match="p_noise"):
        Augment(p_noise=2.0)
