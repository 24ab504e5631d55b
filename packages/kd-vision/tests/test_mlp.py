"""``mlp-<widths>`` models (``kd_vision.models.mlp``): the spec grammar, the layout and parameter counts by hand."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.metrics import count_parameters
from kd_vision.models.mlp import build_mlp, is_mlp_spec, mlp_widths
from torch import nn


def test_spec_grammar() -> None:
    assert mlp_widths("mlp-8") == [8] and mlp_widths("mlp-512-512") == [512, 512]
    assert is_mlp_spec("mlp-16") and not is_mlp_spec("student-cnn") and not is_mlp_spec(16)
    for bad in ("mlp", "mlp-", "mlp-0", "mlp-08", "mlp-8-", "MLP-8", "mlp-8x"):
        assert not is_mlp_spec(bad)
        with pytest.raises(ConfigError, match=r"student\.model") as err:
            mlp_widths(bad, "student.model")
        assert err.value.received == bad


def test_layout_and_parameter_count_by_hand() -> None:
    model = build_mlp("mlp-8", (1, 28, 28), 10)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert count_parameters(model) == 784 * 8 + 8 + 8 * 10 + 10 == 6370
    deep = build_mlp("mlp-32-16", (3, 4, 4), 5)
    assert [(m.in_features, m.out_features) for m in deep if isinstance(m, nn.Linear)] == [(48, 32), (32, 16), (16, 5)]
    assert deep(torch.zeros(2, 3, 4, 4)).shape == (2, 5)


def test_a_given_first_layer_computes_what_it_says() -> None:
    """One hidden unit with weights 1 and bias 0 over a 2×2 input: h = ReLU(sum x), logits = [h, −h] + bias."""
    model = build_mlp("mlp-1", (1, 2, 2), 2)
    with torch.no_grad():
        model[1].weight.fill_(1.0), model[1].bias.zero_()
        model[3].weight.copy_(torch.tensor([[1.0], [-1.0]])), model[3].bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[[[1.0, 2.0], [-0.5, 0.5]]], [[[-1.0, -1.0], [0.0, 0.0]]]])
    assert torch.allclose(model(x), torch.tensor([[3.5, -3.0], [0.5, 0.0]]))


def test_bad_shapes_and_classes_are_refused() -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        build_mlp("mlp-8", (1, 0, 28))
    with pytest.raises(ConfigError, match="num_classes"):
        build_mlp("mlp-8", (1, 28, 28), 1)
