"""Term's per-sample weights (``sample_weight=``), extra batch inputs (``inputs=``) and the option check against the
loss's signature at build time: values by hand, gradients, and every error naming the term's argument."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.losses import HiddenMSE, cross_entropy, kl_divergence, l1
from kd_core.objective import Objective, SampleWeights, Term
from kd_core.transformer_losses import MaskedHiddenMSE, masked_mse

LN = math.log

# three samples, two classes, label 0 for rows 0 and 2 and 1 for row 1:
# row 0 [0, 0] -> CE = ln 2; row 1 [1, 0] -> CE = ln(1 + e) − 0 = ln(1 + e); row 2 [ln 3, 0] -> p_0 = 3/4, CE = ln(4/3)
LOGITS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [LN(3.0), 0.0]])
LABELS = torch.tensor([0, 1, 0])
CE_ROWS = [LN(2.0), LN(1.0 + math.e), LN(4.0 / 3.0)]
WEIGHTS = torch.tensor([1.0, 0.0, 2.0])
WEIGHTED_CE = (1 * CE_ROWS[0] + 0 * CE_ROWS[1] + 2 * CE_ROWS[2]) / 3  # Σ w_i ℓ_i / B


class Recorder:
    """A ``SampleWeights`` provider returning fixed weights and recording what it was given."""

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, batch, student_out, teacher_out, progress) -> torch.Tensor:
        self.calls.append((batch, student_out, teacher_out, progress))
        return self.weights


def test_weighted_cross_entropy_by_hand_from_a_provider_and_from_a_batch_key() -> None:
    provider = Recorder(WEIGHTS)
    weights: SampleWeights = provider  # the protocol a provider fills
    term = Term("ce", cross_entropy, target="label", sample_weight=weights)
    batch = {"label": LABELS, "w": WEIGHTS}
    student = {"logits": LOGITS}
    assert float(term(student, None, batch, 0.25)) == pytest.approx(WEIGHTED_CE, rel=1e-6)
    assert len(provider.calls) == 1
    seen_batch, seen_student, seen_teacher, seen_progress = provider.calls[0]
    assert seen_batch is batch and seen_student is student and seen_teacher is None and seen_progress == 0.25
    by_key = Term("ce", cross_entropy, target="label", sample_weight="w")
    assert float(by_key(student, None, batch, 0.0)) == pytest.approx(WEIGHTED_CE, rel=1e-6)
    # unit weights give back the plain mean
    ones = Term("ce", cross_entropy, target="label", sample_weight=Recorder(torch.ones(3)))
    assert float(ones(student, None, batch, 0.0)) == pytest.approx(sum(CE_ROWS) / 3, rel=1e-6)
    # inside an objective the weighted term is weighted again by its term weight
    result = Objective(Term("ce", cross_entropy, target="label", weight=0.5, sample_weight="w"))(student, None, batch)
    assert float(result.total) == pytest.approx(0.5 * WEIGHTED_CE, rel=1e-6)


def test_weighted_kd_term_passes_its_options_with_reduction_none() -> None:
    teacher = torch.tensor([[LN(3.0), 0.0], [0.0, 0.0], [0.0, LN(3.0)]])
    per = kl_divergence(LOGITS, teacher, temperature=2.0, reduction="none")
    term = Term("kd", kl_divergence, teacher="logits", sample_weight="w", temperature=2.0)
    value = term({"logits": LOGITS}, {"logits": teacher}, {"w": WEIGHTS}, 0.0)
    assert float(value) == pytest.approx(float(per[0] + 2 * per[2]) / 3, rel=1e-6)


def test_per_position_losses_are_averaged_over_positions_before_weighing() -> None:
    # two sequences of two tokens; per-token CE averaged per sequence, then weighed [0, 3]
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[LN(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 1], [0, 0]])
    term = Term("ce", cross_entropy, target="label", sample_weight=Recorder(torch.tensor([0.0, 3.0])))
    expected = 3 * (LN(4.0 / 3.0) + LN(2.0)) / 2 / 2
    assert float(term({"logits": logits}, None, {"label": labels}, 0.0)) == pytest.approx(expected, rel=1e-6)


def test_a_zero_weighted_sample_gets_zero_gradient() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    term = Term("ce", cross_entropy, target="label", sample_weight="w")
    term({"logits": logits}, None, {"label": LABELS, "w": WEIGHTS}, 0.0).backward()
    grad = logits.grad
    assert grad is not None
    assert grad[1].abs().sum() == 0
    assert grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
    # d/dz of (2/3)·CE on row 2: (2/3)·(softmax − onehot) = (2/3)·[3/4 − 1, 1/4]
    assert grad[2].tolist() == pytest.approx([2 / 3 * -0.25, 2 / 3 * 0.25], rel=1e-5)


def test_inputs_pass_batch_entries_to_the_loss_as_keywords() -> None:
    # features [[1], [3]] against zeros: unmasked MSE (1 + 9) / 2 = 5; with token 1 masked out, 1
    student = {"h": torch.tensor([[[1.0], [3.0]]])}
    teacher = {"h": torch.zeros(1, 2, 1)}
    batch = {"attention_mask": torch.tensor([[1, 0]]), "label": torch.tensor([0])}
    plain = Term("mse", masked_mse, student="h", teacher="h")
    masked = Term("mse", masked_mse, student="h", teacher="h", inputs={"mask": "attention_mask"})
    assert float(plain(student, teacher, batch, 0.0)) == pytest.approx(5.0)
    assert float(masked(student, teacher, batch, 0.0)) == pytest.approx(1.0)
    # an nn.Module loss: its forward's keywords count
    module = Term("mse", MaskedHiddenMSE(), student="h", teacher="h", inputs={"mask": "attention_mask"})
    assert float(module(student, teacher, batch, 0.0)) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"mse\.inputs\.mask") as err:
        masked(student, teacher, {"label": torch.tensor([0])}, 0.0)
    assert err.value.received == "attention_mask" and "label" in err.value.expected


def test_a_typo_in_an_option_is_an_error_at_build_naming_the_option_and_the_nearest_keyword() -> None:
    with pytest.raises(ConfigError) as err:
        Term("kd", kl_divergence, teacher="logits", temprature=4.0)
    assert err.value.argument == "kd.temprature" and err.value.received == "temprature"
    assert "temperature" in err.value.expected and "did you mean 'temperature'?" in str(err.value)
    # an nn.Module loss is checked against its forward (HiddenMSE's takes no options)
    with pytest.raises(ConfigError, match=r"hidden\.scale"):
        Term("hidden", HiddenMSE(2, 3), student="h", teacher="h", scale=2.0)


def test_an_input_keyword_the_loss_lacks_is_an_error_at_build() -> None:
    with pytest.raises(ConfigError) as err:
        Term("ce", cross_entropy, target="label", inputs={"mask": "attention_mask"})
    assert err.value.argument == "ce.inputs.mask" and "label_smoothing" in err.value.expected
    with pytest.raises(ConfigError, match=r"ce\.inputs\.label_smoothing"):  # both an option and an input
        Term("ce", cross_entropy, target="label", label_smoothing=0.1, inputs={"label_smoothing": "s"})
    with pytest.raises(ConfigError, match=r"ce\.inputs"):
        Term("ce", cross_entropy, target="label", inputs=["mask"])


def test_sample_weight_needs_a_loss_with_reduction() -> None:
    with pytest.raises(ConfigError) as err:
        Term("l1", l1, teacher="logits", sample_weight="w")
    assert err.value.argument == "l1.sample_weight" and "reduction" in err.value.expected
    with pytest.raises(ConfigError, match=r"ce\.reduction"):  # the term sets the reduction itself
        Term("ce", cross_entropy, target="label", sample_weight="w", reduction="sum")
    with pytest.raises(ConfigError, match=r"ce\.sample_weight"):
        Term("ce", cross_entropy, target="label", sample_weight=3)


def test_weights_of_the_wrong_shape_and_a_missing_weight_key_are_errors_naming_the_term() -> None:
    batch = {"label": LABELS}
    term = Term("ce", cross_entropy, target="label", sample_weight=Recorder(torch.ones(2)))
    with pytest.raises(ConfigError, match=r"ce\.sample_weight") as err:
        term({"logits": LOGITS}, None, batch, 0.0)
    assert err.value.received == (2,)
    with pytest.raises(ConfigError, match=r"ce\.sample_weight") as err:
        Term("ce", cross_entropy, target="label", sample_weight="w")({"logits": LOGITS}, None, batch, 0.0)
    assert err.value.received == "w"


def test_losses_with_kwargs_accept_anything_and_required_arguments_must_be_filled() -> None:
    def loose(student: torch.Tensor, teacher: torch.Tensor, **options: Any) -> torch.Tensor:
        return (student - teacher).abs().mean() * options.get("scale", 1.0)

    term = Term("loose", loose, teacher="logits", scale=2.0, anything="goes")
    assert float(term({"logits": torch.ones(1, 2)}, {"logits": torch.zeros(1, 2)}, {}, 0.0)) == 2.0

    def needs_ids(student: torch.Tensor, teacher: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return student.sum() * 0 + ids.float().sum()

    with pytest.raises(ConfigError, match=r"ids\.loss"):  # `ids` is never given
        Term("ids", needs_ids, teacher="logits")
    with pytest.raises(ConfigError, match=r"kd\.loss"):  # a two-argument loss on a term without a reference
        Term("kd", kl_divergence)
    fed = Term("ids", needs_ids, teacher="logits", inputs={"ids": "index"})
    assert float(fed({"logits": torch.ones(1, 2)}, {"logits": torch.zeros(1, 2)}, {"index": torch.tensor([4])},
                     0.0)) == 4.0
