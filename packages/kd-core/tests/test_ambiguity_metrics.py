"""Label-ambiguity metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.ambiguity_metrics import (
    ambiguity_metrics,
    confidence_on_wrong,
    jensen_shannon_distance,
    jensen_shannon_distances,
    kl_to_soft_labels,
    majority_labels,
    mean_confidence,
)
from kd_core.errors import ConfigError
from kd_core.metrics import js_divergence_to_soft_labels

LN3, LN4, LN9 = math.log(3.0), math.log(4.0), math.log(9.0)


def test_jsd_is_the_base2_distance_per_sample_then_averaged():
    # p = [1, 0], q = [.5, .5], m = [.75, .25]:
    # KL(p‖m) = log2(4/3) = 0.415037; KL(q‖m) = .5·log2(2/3) + .5·log2(2) = 0.207519
    # JS = .5·0.415037 + .5·0.207519 = 0.311278 bits; distance = sqrt(.311278) = 0.557923
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    human = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    human[1] = torch.softmax(logits[1], -1)  # the second sample matches exactly: distance 0
    per_sample = jensen_shannon_distances(logits, human)
    assert per_sample.tolist() == pytest.approx([0.557923, 0.0], abs=1e-6)
    # the mean of distances, not the square root of the mean divergence
    assert jensen_shannon_distance(logits, human) == pytest.approx(0.557923 / 2, abs=1e-6)
    nats = js_divergence_to_soft_labels(logits, human)  # kd_core.metrics: mean divergence in nats
    assert nats == pytest.approx(0.311278 * math.log(2) / 2, abs=1e-6)


def test_jsd_bounds_disjoint_and_identical():
    disjoint = jensen_shannon_distance(torch.tensor([[0.0, -1e4]]), torch.tensor([[0.0, 1.0]]))
    assert disjoint == pytest.approx(1.0, abs=1e-6)
    assert jensen_shannon_distance(torch.zeros(3, 4), torch.full((3, 4), 0.25)) == pytest.approx(0.0, abs=1e-7)


def test_kl_to_human_distribution_in_nats():
    # KL([.5, .5] ‖ [.75, .25]) = .5·ln(2/3) + .5·ln 2 = 0.143841
    assert kl_to_soft_labels(torch.tensor([[LN3, 0.0]]), torch.tensor([[0.5, 0.5]])) == pytest.approx(0.143841,
                                                                                                       abs=1e-6)
    # a zero in the human distribution contributes nothing: KL([1, 0] ‖ [.75, .25]) = ln(4/3)
    assert kl_to_soft_labels(torch.tensor([[LN3, 0.0]]), torch.tensor([[1.0, 0.0]])) == pytest.approx(
        math.log(4 / 3), abs=1e-6)


def test_confidence_on_wrong_predictions():
    # probabilities [.75, .25] (right), [.1, .9] (wrong, .9), [.8, .2] (wrong, .8)
    logits = torch.tensor([[LN3, 0.0], [0.0, LN9], [LN4, 0.0]])
    labels = torch.tensor([0, 0, 1])
    assert confidence_on_wrong(logits, labels) == pytest.approx(0.85, abs=1e-6)
    assert mean_confidence(logits) == pytest.approx((0.75 + 0.9 + 0.8) / 3, abs=1e-6)
    assert math.isnan(confidence_on_wrong(logits, torch.tensor([0, 1, 0])))


def test_majority_labels_break_ties_explicitly():
    human = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7], [0.5, 0.0, 0.5]])
    assert majority_labels(human).tolist() == [0, 2, 0]  # lowest index without a seed
    assert majority_labels(human, seed=3).tolist() == majority_labels(human, seed=3).tolist()
    ties = torch.tensor([[0.5, 0.5, 0.0]]).repeat(200, 1)
    drawn = majority_labels(ties, seed=0)
    assert set(drawn.tolist()) == {0, 1}  # both tied classes are drawn, never the third
    assert 60 < int((drawn == 0).sum()) < 140
    with pytest.raises(ConfigError, match="soft_labels"):
        majority_labels(torch.tensor([1, 2]))


def test_report_and_bad_input():
    logits = torch.tensor([[LN3, 0.0], [0.0, LN9]])
    report = ambiguity_metrics(logits, torch.tensor([0, 0]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert set(report) == {"accuracy", "ece", "jsd", "kl", "confidence_wrong", "mean_confidence"}
    assert report["accuracy"] == 0.5 and report["confidence_wrong"] == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="soft_labels"):
        jensen_shannon_distance(logits, torch.tensor([[0.5, 0.6], [0.5, 0.5]]))  # a row not summing to 1
    with pytest.raises(ConfigError, match="soft_labels"):
        jensen_shannon_distance(logits, torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))  # wrong width
    with pytest.raises(ConfigError, match="labels"):
        confidence_on_wrong(logits, torch.tensor([0.0, 1.0]))
