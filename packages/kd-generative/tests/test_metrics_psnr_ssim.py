"""PSNR and SSIM: values by hand, SSIM(x, x) = 1, agreement with scikit-image, and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from kd_core.errors import ConfigError, KDError
from kd_generative.metrics import psnr, ssim
from kd_generative.metrics.ssim import gaussian_window
from skimage.metrics import structural_similarity

# SSIM here runs in float32 and scikit-image in float64: observed gaps are ~1e-7 (float64 input: ~1e-16);
# 1e-4 leaves room for any x86 CPU and BLAS.
SSIM_TOLERANCE = 1e-4


def test_psnr_of_known_arrays_by_hand() -> None:
    reference = torch.zeros(2, 1, 2, 2)
    images = reference.clone()
    images[0, 0, 0, 0] = 0.5  # MSE = 0.25 / 4 = 1/16 -> 10 log10(1 / (1/16)) = 12.04 dB with L = 1
    images[1] = 0.1  # MSE = 0.01 -> 20 dB
    values = psnr(images, reference, data_range=(0.0, 1.0), reduction="none")
    assert values.shape == (2,)
    assert math.isclose(float(values[0]), 10 * math.log10(16), rel_tol=1e-6)
    assert math.isclose(float(values[1]), 20.0, rel_tol=1e-6)
    assert math.isclose(float(psnr(images, reference, data_range=(0.0, 1.0))), float(values.mean()), rel_tol=1e-6)
    # the same pixels in [-1, 1] with L = 2: the same PSNR
    shifted = psnr(images * 2 - 1, reference * 2 - 1, data_range=(-1.0, 1.0), reduction="none")
    assert torch.allclose(shifted, values, rtol=1e-5)
    assert math.isinf(float(psnr(reference, reference, data_range=(0.0, 1.0))))


def test_gaussian_window_is_normalised_and_symmetric() -> None:
    window = gaussian_window()
    assert window.shape == (11,)
    assert math.isclose(float(window.sum()), 1.0, rel_tol=1e-6)
    assert torch.equal(window, window.flip(0))
    assert math.isclose(float(window[5] / window[6]), math.exp(0.5 / 1.5 ** 2), rel_tol=1e-5)


def test_ssim_of_an_image_with_itself_is_one_and_lower_for_noise() -> None:
    x = torch.rand(3, 3, 16, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(ssim(x, x, reduction="none"), torch.ones(3), atol=1e-6)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert float(ssim(noisy, x)) < 0.9


def _skimage_ssim(a: np.ndarray, b: np.ndarray, span: float) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=span, channel_axis=0)


def test_ssim_matches_scikit_image_on_random_and_real_images() -> None:
    rng = np.random.default_rng(0)
    noise_a = rng.random((2, 3, 24, 31))
    noise_b = np.clip(noise_a + 0.2 * rng.normal(size=noise_a.shape), 0, 1)
    photo = skimage.data.astronaut()[100:164, 180:244].transpose(2, 0, 1) / 255.0
    blurred = skimage.filters.gaussian(photo, sigma=1.0, channel_axis=0)
    grey = skimage.data.camera()[200:248, 200:260][None] / 255.0
    darker = grey * 0.8
    for a, b in [(noise_a, noise_b), (photo[None], blurred[None]), (grey[None], darker[None])]:
        ours = ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float(), data_range=(0.0, 1.0),
                    reduction="none")
        theirs = [_skimage_ssim(x, y, 1.0) for x, y in zip(a, b)]
        assert np.allclose(ours.numpy(), theirs, atol=SSIM_TOLERANCE, rtol=0), (ours, theirs)
    # [-1, 1] with data_range (-1, 1) is the same as [0, 1] with (0, 1)
    a, b = torch.from_numpy(noise_a).float(), torch.from_numpy(noise_b).float()
    assert torch.allclose(ssim(a * 2 - 1, b * 2 - 1), ssim(a, b, data_range=(0.0, 1.0)), atol=1e-5)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_bad_inputs_are_errors_naming_the_argument(metric) -> None:
    x = torch.zeros(2, 3, 12, 12)
    with pytest.raises(ConfigError, match=r"reference: expected the shape of images"):
        metric(x, torch.zeros(2, 3, 12, 13))
    with pytest.raises(ConfigError, match=r"images: expected values in data_range \[0, 1\], received '\[-0.5"):
        metric(x - 0.5, x, data_range=(0.0, 1.0))
    with pytest.raises(ConfigError, match=r"images: expected a batch of images \[N, C, H, W\]"):
        metric(x[0], x[0])
    with pytest.raises(ConfigError, match="data_range"):
        metric(x, x, data_range=(1.0, 0.0))
    with pytest.raises(ConfigError, match="reduction"):
        metric(x, x, reduction="sum")
    with pytest.raises(KDError, match="finite"):
        metric(x.clone().fill_(float("nan")), x)
    if metric is ssim:
        with pytest.raises(ConfigError, match=r"images.shape\[2:\]: expected height and width >= 11"):
            ssim(torch.zeros(1, 1, 10, 40), torch.zeros(1, 1, 10, 40))
