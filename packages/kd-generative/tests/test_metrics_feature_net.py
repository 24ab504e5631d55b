"""The metric feature network (a tiny training budget, cached in a private KD_DATA_HOME), the perceptual and
Fréchet distances in its space, and ``image_quality``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_generative.metrics import (
    FeatureNetwork,
    embed_images,
    feature_network,
    frechet_image_distance,
    image_quality,
    perceptual_distance,
)
from kd_generative.metrics.photos import PHOTOS, load_photos, random_crops, split_photos

STEPS = 2  # a tiny budget: the tests check plumbing and caching, not the default network's quality


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ``KD_DATA_HOME`` shared by this module's tests, so the network is trained once."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("kd-home")
        patch.setenv("KD_DATA_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def net(home: Path) -> FeatureNetwork:
    return feature_network(steps=STEPS)


def _images(seed: int, count: int = 4, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(count, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_crops_are_deterministic_and_cover_every_photo() -> None:
    photos = split_photos(load_photos(), "train")
    assert len(photos) == len(PHOTOS) == 14
    assert all(p.shape[0] == 3 and float(p.min()) >= 0.0 and float(p.max()) <= 1.0 for p in photos)
    a, labels = random_crops(photos, 6, torch.Generator().manual_seed(5))
    b, again = random_crops(photos, 6, torch.Generator().manual_seed(5))
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and torch.equal(labels, again)
    held_out = split_photos(load_photos(), "held_out")
    assert all(t.shape[2] + h.shape[2] == p.shape[2] for t, h, p in zip(photos, held_out, load_photos()))


def test_network_is_cached_frozen_and_gives_multi_stage_features(net: FeatureNetwork, home: Path) -> None:
    assert "trained in this run" in net.provenance
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    again = feature_network(steps=STEPS)
    assert "reused" in again.provenance and str(home) in again.provenance
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    features = net(torch.rand(2, 3, 20, 24))
    assert [tuple(f.shape) for f in features] == [(2, 16, 20, 24), (2, 32, 10, 12), (2, 64, 5, 6)]
    assert net.logits(torch.rand(2, 3, 32, 32)).shape == (2, 14)
    with pytest.raises(ConfigError, match="steps"):
        feature_network(steps=0)


def test_perceptual_distance_is_zero_for_identical_images_and_symmetric(net: FeatureNetwork) -> None:
    x, y = _images(0), _images(1)
    same = perceptual_distance(x, x, feature_net=net, reduction="none")
    assert same.shape == (4,) and torch.allclose(same, torch.zeros(4), atol=1e-6)
    forward = perceptual_distance(x, y, feature_net=net, reduction="none")
    assert (forward > 0).all() and (forward <= 4.0 * 3).all()  # at most 4 per stage, 3 stages
    assert torch.allclose(forward, perceptual_distance(y, x, feature_net=net, reduction="none"), rtol=1e-5)
    # grey images are repeated to RGB; [0, 1] images with data_range (0, 1) are the same images
    grey, other = _images(2, channels=1), _images(3, channels=1)
    assert torch.allclose(perceptual_distance(grey, other, feature_net=net),
                          perceptual_distance(grey.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1),
                                              feature_net=net))
    assert torch.allclose(perceptual_distance((x + 1) / 2, (y + 1) / 2, feature_net=net, data_range=(0.0, 1.0)),
                          forward.mean(), rtol=1e-5)


def test_frechet_distance_of_image_sets(net: FeatureNetwork) -> None:
    x, y = _images(3, count=6), _images(4, count=5, size=20)
    assert embed_images(x, feature_net=net).shape == (6, 64)
    assert frechet_image_distance(x, x, feature_net=net) == pytest.approx(0.0, abs=1e-6)
    distance = frechet_image_distance(x, y, feature_net=net)
    assert distance > 0.0
    assert math.isclose(distance, frechet_image_distance(y, x, feature_net=net), rel_tol=1e-6)
    with pytest.raises(ConfigError, match="reference: expected at least 2 images"):
        frechet_image_distance(x, y[:1], feature_net=net)


def test_image_quality_returns_every_metric(net: FeatureNetwork) -> None:
    reference = _images(5, count=3)
    student = (reference + 0.1 * _images(6, count=3)).clamp(-1, 1)
    result = image_quality(student, reference, net)
    assert set(result) == {"psnr", "ssim", "perceptual", "frechet"}
    assert all(isinstance(v, float) for v in result.values())
    assert 20.0 < result["psnr"] < 40.0 and 0.0 < result["ssim"] < 1.0
    assert result["perceptual"] > 0.0 and result["frechet"] > 0.0
    same = image_quality(reference, reference, net)
    assert math.isinf(same["psnr"]) and same["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert same["perceptual"] == pytest.approx(0.0, abs=1e-6) and same["frechet"] == pytest.approx(0.0, abs=1e-6)


def test_image_quality_checks_inputs_before_loading_a_network(data_home: Path) -> None:
    # data_home (conftest.py) is a fresh KD_DATA_HOME: a default network would be trained and cached there
    x = _images(7, count=2)
    cases = [
        ((x, x[:, :, :12]), r"reference_images: expected the shape of student_images, \(2, 3, 16, 16\), "
                            r"received \(2, 3, 12, 16\)"),
        ((x[:, :2], x[:, :2]), r"student_images.shape\[1\]: expected 1 or 3 channels .*received 2"),
        ((x, x * 3), r"reference_images: expected values in data_range \[-1, 1\], received '\[-2\.9"),
        ((x[:1], x[:1]), "student_images: expected at least 2 images"),
        ((x[:, :, :8, :8], x[:, :, :8, :8]), r"student_images.shape\[2:\]: expected height and width >= 11"),
    ]
    for arguments, message in cases:
        with pytest.raises(ConfigError, match=message):
            image_quality(*arguments)
    assert not data_home.exists()
