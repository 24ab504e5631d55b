"""Hand-computed checks for kd_core.metrics."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.metrics import (
    CalibrationResult,
    LatencyResult,
    accuracy,
    brier_score,
    classification_metrics,
    count_macs,
    count_parameters,
    expected_calibration_error,
    format_mean_std,
    js_divergence_to_soft_labels,
    kl_to_soft_labels,
    mean_std,
    measure_latency,
    negative_log_likelihood,
)
from torch import nn

LN = math.log


def _binary_logits(p_class1: list[float]) -> torch.Tensor:
    """Two-class logits [0, log(p / (1 - p))], whose softmax is exactly [1 - p, p]."""
    return torch.tensor([[0.0, LN(p / (1 - p))] for p in p_class1], dtype=torch.float64)


# Three samples, two classes. softmax rows:
#   sample 0: logits [ln 3, 0] -> p = [0.75, 0.25], label 0 -> predicted 0, correct
#   sample 1: logits [0, ln 3] -> p = [0.25, 0.75], label 0 -> predicted 1, wrong
#   sample 2: logits [0, ln 9] -> p = [0.10, 0.90], label 1 -> predicted 1, correct
LOGITS = torch.tensor([[LN(3), 0.0], [0.0, LN(3)], [0.0, LN(9)]])
LABELS = torch.tensor([0, 0, 1])


def test_accuracy_by_hand() -> None:
    # correct: 1, 0, 1 -> 2/3
    assert accuracy(LOGITS, LABELS) == pytest.approx(2 / 3)


def test_nll_by_hand() -> None:
    # -(ln 0.75 + ln 0.25 + ln 0.9) / 3 = (0.287682 + 1.386294 + 0.105361) / 3 = 0.593112
    expected = -(LN(0.75) + LN(0.25) + LN(0.9)) / 3
    assert negative_log_likelihood(LOGITS, LABELS) == pytest.approx(expected, abs=1e-6)
    assert negative_log_likelihood(LOGITS, LABELS) == pytest.approx(0.593112, abs=1e-6)


def test_brier_by_hand() -> None:
    # sample 0: (0.75 - 1)^2 + 0.25^2 = 0.125
    # sample 1: (0.25 - 1)^2 + 0.75^2 = 1.125
    # sample 2: 0.10^2 + (0.90 - 1)^2 = 0.02
    # mean = 1.27 / 3 = 0.423333
    assert brier_score(LOGITS, LABELS) == pytest.approx(1.27 / 3, abs=1e-6)


def test_metrics_accept_lists_sequence_axes_and_half_precision() -> None:
    assert accuracy(LOGITS.tolist(), LABELS.tolist()) == pytest.approx(2 / 3)
    # [batch, time, classes] logits with [batch, time] labels are flattened consistently
    seq_logits = torch.cat([LOGITS, LOGITS]).reshape(2, 3, 2)
    seq_labels = torch.cat([LABELS, LABELS]).reshape(2, 3)
    assert brier_score(seq_logits, seq_labels) == pytest.approx(1.27 / 3, abs=1e-6)
    assert accuracy(LOGITS.to(torch.bfloat16), LABELS) == pytest.approx(2 / 3)


def test_ece_by_hand() -> None:
    # Four samples, confidences 0.55, 0.65, 0.75, 0.95 in distinct bins of width 0.1;
    # correct, wrong, correct, correct.
    #   bin (0.5, 0.6]: |1 - 0.55| = 0.45
    #   bin (0.6, 0.7]: |0 - 0.65| = 0.65
    #   bin (0.7, 0.8]: |1 - 0.75| = 0.25
    #   bin (0.9, 1.0]: |1 - 0.95| = 0.05
    # ECE = (0.45 + 0.65 + 0.25 + 0.05) / 4 = 0.35
    logits = _binary_logits([0.55, 0.65, 0.75, 0.95])  # class 1 predicted everywhere
    labels = torch.tensor([1, 0, 1, 1])
    result = expected_calibration_error(logits, labels, n_bins=10)
    assert isinstance(result, CalibrationResult)
    assert result.ece == pytest.approx(0.35, abs=1e-9)
    assert result.bin_count == [0, 0, 0, 0, 0, 1, 1, 1, 0, 1]
    assert result.bin_edges == pytest.approx([b / 10 for b in range(11)])
    assert result.bin_confidence == pytest.approx([0, 0, 0, 0, 0, 0.55, 0.65, 0.75, 0, 0.95])
    assert result.bin_accuracy == pytest.approx([0, 0, 0, 0, 0, 1, 0, 1, 0, 1])
    assert all(isinstance(c, int) for c in result.bin_count)


def test_ece_perfectly_calibrated_is_zero() -> None:
    # 4 samples at confidence 0.75 with 3 correct, 10 at 0.9 with 9 correct: every bin's
    # accuracy equals its confidence.
    logits = _binary_logits([0.75] * 4 + [0.9] * 10)
    labels = torch.tensor([1, 1, 1, 0] + [1] * 9 + [0])
    assert expected_calibration_error(logits, labels).ece == pytest.approx(0.0, abs=1e-9)


def test_ece_single_bin_and_confidence_one() -> None:
    # one bin: |accuracy - mean confidence| = |1/2 - (0.6 + 1.0) / 2| = 0.3; confidence 1.0 lands in the last bin
    logits = torch.tensor([[0.0, LN(0.6 / 0.4)], [0.0, 200.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    result = expected_calibration_error(logits, labels, n_bins=1)
    assert result.ece == pytest.approx(0.3, abs=1e-9)
    assert result.bin_count == [2]
    assert expected_calibration_error(logits, labels, n_bins=4).bin_count == [0, 0, 1, 1]


def test_classification_metrics_keys_and_values() -> None:
    report = classification_metrics(LOGITS, LABELS, n_bins=10)
    assert set(report) == {"accuracy", "nll", "ece", "brier"}
    assert all(type(v) is float for v in report.values())
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["brier"] == pytest.approx(1.27 / 3, abs=1e-6)
    # bins (0.7, 0.8]: two samples at 0.75, accuracy 1/2 -> gap 0.25; (0.8, 0.9]: 0.9, correct -> 0.1
    # ECE = 2/3 * 0.25 + 1/3 * 0.1 = 0.2
    assert report["ece"] == pytest.approx(0.2, abs=1e-6)


def test_kl_and_jsd_zero_when_logits_are_log_soft_labels() -> None:
    soft = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    logits = torch.log(soft)  # the zero entry gives a -inf logit
    kl = kl_to_soft_labels(logits, soft)
    jsd = js_divergence_to_soft_labels(logits, soft)
    assert not math.isnan(kl) and not math.isnan(jsd)
    assert kl == pytest.approx(0.0, abs=1e-12)
    assert jsd == pytest.approx(0.0, abs=1e-12)


def test_kl_and_jsd_by_hand_with_zero_entries() -> None:
    # row 0: soft P = [1, 0],     logits [0, 0]    -> Q = [0.5, 0.5]
    # row 1: soft P = [0.5, 0.5], logits [0, ln 3] -> Q = [0.25, 0.75]
    soft = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[0.0, 0.0], [0.0, LN(3)]])
    # KL row 0 = 1 * ln(1 / 0.5) = ln 2  (0 * log 0 = 0)
    # KL row 1 = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4/3)
    kl_expected = (LN(2) + 0.5 * LN(4 / 3)) / 2  # 0.418494
    assert kl_to_soft_labels(logits, soft) == pytest.approx(kl_expected, abs=1e-6)
    # JSD row 0: M = [0.75, 0.25]; KL(P‖M) = ln(4/3), KL(Q‖M) = 0.5 ln(2/3) + 0.5 ln 2 = 0.5 ln(4/3)
    #   -> 0.5 (ln(4/3) + 0.5 ln(4/3)) = 0.75 ln(4/3)
    # JSD row 1: M = [0.375, 0.625]; KL(P‖M) = 0.5 ln(4/3) + 0.5 ln(0.8),
    #   KL(Q‖M) = 0.25 ln(2/3) + 0.75 ln(1.2)
    row0 = 0.75 * LN(4 / 3)
    row1 = 0.5 * (0.5 * LN(4 / 3) + 0.5 * LN(0.8) + 0.25 * LN(2 / 3) + 0.75 * LN(1.2))
    assert js_divergence_to_soft_labels(logits, soft) == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert js_divergence_to_soft_labels(logits, soft) == pytest.approx(0.124792, abs=1e-6)


def test_jsd_of_disjoint_distributions_is_ln2() -> None:
    soft = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[-math.inf, 0.0]])  # Q = [0, 1]
    assert js_divergence_to_soft_labels(logits, soft) == pytest.approx(LN(2), abs=1e-12)


def test_soft_label_checks_name_the_argument() -> None:
    logits = torch.zeros(2, 3)
    with pytest.raises(ConfigError) as info:
        kl_to_soft_labels(logits, torch.full((2, 4), 0.25))
    assert info.value.argument == "soft_labels"
    with pytest.raises(ConfigError, match="soft_labels"):
        js_divergence_to_soft_labels(logits, torch.ones(2, 3))  # rows sum to 3, not 1
    with pytest.raises(ConfigError, match="soft_labels"):
        kl_to_soft_labels(logits, torch.tensor([[1.5, -0.5, 0.0]] * 2))


def test_label_and_logit_checks_name_the_argument() -> None:
    with pytest.raises(ConfigError) as info:
        accuracy(torch.zeros(3, 2), torch.tensor([0, 1]))
    assert info.value.argument == "labels"
    assert "(3,)" in str(info.value) and "(2,)" in str(info.value)
    with pytest.raises(ConfigError, match="labels"):
        negative_log_likelihood(torch.zeros(2, 2), torch.tensor([0, 2]))  # class 2 of 2
    with pytest.raises(ConfigError, match="labels"):
        brier_score(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))  # float labels
    with pytest.raises(ConfigError) as info:
        accuracy(torch.zeros(3), torch.tensor([0, 1, 0]))  # no class axis
    assert info.value.argument == "logits"
    with pytest.raises(ConfigError, match="logits"):
        accuracy(torch.tensor([[0.0, math.nan]]), torch.tensor([0]))
    with pytest.raises(ConfigError, match="logits"):
        accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError) as info:
            expected_calibration_error(LOGITS, LABELS, n_bins=bad)
        assert info.value.argument == "n_bins"
    with pytest.raises(ConfigError, match="n_bins"):
        classification_metrics(LOGITS, LABELS, n_bins=0)


def test_count_parameters() -> None:
    linear = nn.Linear(3, 4)
    assert count_parameters(linear) == 16  # 3 * 4 weights + 4 biases
    linear.bias.requires_grad_(False)
    assert count_parameters(linear, trainable_only=True) == 12
    assert count_parameters(linear) == 16
    shared = nn.Sequential(linear, nn.ReLU())
    shared.append(shared[0])  # the same Linear twice: its parameters count once
    assert count_parameters(shared) == 16
    with pytest.raises(ConfigError, match="model"):
        count_parameters("not a model")  # type: ignore[arg-type]


def test_count_macs_linear_and_conv() -> None:
    # Linear(3, 4) on 2 samples: 2 * 3 * 4 = 24 MACs (the bias add is not a MAC)
    assert count_macs(nn.Linear(3, 4), torch.randn(2, 3)) == 24
    # Conv2d(2 -> 3, 3x3, no padding) on 1x2x5x5: output 3 x 3 x 3 = 27 values,
    # each 2 * 3 * 3 = 18 MACs -> 486
    assert count_macs(nn.Conv2d(2, 3, kernel_size=3), torch.randn(1, 2, 5, 5)) == 486


def test_count_macs_restores_each_training_flag() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a submodule deliberately frozen in eval mode
    assert count_macs(model, torch.randn(1, 3)) == 3 * 4 + 4 * 2
    assert model.training and model[0].training and model[2].training
    assert not model[1].training
    with pytest.raises(ConfigError, match="example_inputs"):
        count_macs(model)


def test_measure_latency() -> None:
    model = nn.Linear(3, 4)
    model.train()
    result = measure_latency(model, torch.randn(5, 3), warmup=1, iterations=7)
    assert isinstance(result, LatencyResult)
    assert result.iterations == 7
    assert result.batch_size == 5
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.mean_ms > 0 and result.std_ms >= 0
    assert model.training  # restored
    single = measure_latency(model, torch.randn(2, 3), warmup=0, iterations=1)
    assert single.iterations == 1 and single.std_ms == 0.0
    assert single.p50_ms == single.p99_ms == single.mean_ms


def test_measure_latency_checks_arguments() -> None:
    model = nn.Linear(3, 4)
    for kwargs, argument in (({"iterations": 0}, "iterations"), ({"warmup": -1}, "warmup")):
        with pytest.raises(ConfigError) as info:
            measure_latency(model, torch.randn(1, 3), **kwargs)
        assert info.value.argument == argument
    with pytest.raises(ConfigError, match="example_inputs"):
        measure_latency(model)


def test_mean_std() -> None:
    assert mean_std([1, 2, 3]) == (2.0, 1.0)  # sample std: sqrt(((-1)^2 + 0 + 1^2) / 2) = 1
    assert mean_std([5.0]) == (5.0, 0.0)
    assert mean_std(torch.tensor([2.0, 4.0])) == pytest.approx((3.0, math.sqrt(2)))
    with pytest.raises(ConfigError) as info:
        mean_std([])
    assert info.value.argument == "values"


def test_format_mean_std() -> None:
    assert format_mean_std([1, 2, 3]) == "2.00 ± 1.00"
    # mean 0.6, std sqrt(0.02) = 0.141421 -> scaled by 100 with one decimal
    assert format_mean_std([0.5, 0.7], digits=1, scale=100) == "60.0 ± 14.1"
    assert format_mean_std([0.9731]) == "0.97 ± 0.00"
    with pytest.raises(ConfigError, match="digits"):
        format_mean_std([1.0], digits=-1)
