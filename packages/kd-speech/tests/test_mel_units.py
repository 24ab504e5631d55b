"""k-means units over log-mel frames (``kd_speech.models.MelUnits``, HuBERT's first-iteration targets)."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import KDError
from kd_speech.models import MelUnits, kmeans


def test_kmeans_recovers_well_separated_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=generator) for c in centers])
    found = kmeans(points, 3, seed=1)
    # every true centre has a centroid within 0.1 of it, whatever order they come in
    assert torch.cdist(centers, found).min(1).values.max() < 0.1


def test_kmeans_is_deterministic_for_a_seed_and_refuses_too_few_points() -> None:
    points = torch.randn(200, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(kmeans(points, 8, seed=5), kmeans(points, 8, seed=5))
    with pytest.raises(KDError, match="points"):
        kmeans(points[:3], 8)


def _tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_units_tell_different_sounds_apart_and_survive_a_state_dict_round_trip() -> None:
    # frames are mean-normalised per utterance, so sounds are told apart within an utterance
    low_high, high_low = torch.cat([_tone(300.0), _tone(3000.0)]), torch.cat([_tone(3000.0), _tone(300.0)])
    units = MelUnits(clusters=2, n_mels=40).fit([low_high, high_low], seed=0)
    a, b = units.tokens(low_high), units.tokens(high_low)
    assert a.shape == (1 + (len(low_high) - 400) // 160,)
    half = len(a) // 2
    # the steady middle of each tone maps to one unit, the two tones to different units, in either order
    assert a[5:half - 5].unique().numel() == 1 and a[half + 5:-5].unique().numel() == 1
    assert a[10] != a[-10] and a[10] == b[-10] and a[-10] == b[10]
    copy = MelUnits(clusters=2, n_mels=40)
    copy.load_state_dict(units.state_dict())
    assert torch.equal(copy.tokens(high_low), b)
    assert units.num_tokens == 2


def test_unfitted_units_and_bad_sizes_are_named() -> None:
    with pytest.raises(KDError, match="fit"):
        MelUnits(4).tokens(_tone(440.0))
    with pytest.raises(KDError, match="clusters"):
        MelUnits(clusters=1)
    with pytest.raises(KDError, match="waves"):
        MelUnits(4).fit([])
