"""PT-KD and FT-KD losses of two-stage textual KD: values and gradients by hand, shape errors, the objective."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from kd_core.errors import ConfigError
from kd_speech.slu import ft_kd_loss, ft_kd_objective, logit_l1, pt_kd_loss
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pt_kd_is_the_mse_over_batch_and_features_with_its_gradient() -> None:
    speech = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    text = torch.tensor([[0.0, 2.0], [3.0, 1.0]], requires_grad=True)
    loss = pt_kd_loss(speech, text)
    assert loss.item() == pytest.approx((1 + 0 + 0 + 9) / 4)
    loss.backward()
    assert torch.allclose(speech.grad, torch.tensor([[0.5, 0.0], [0.0, 1.5]]))  # 2 (s - t) / 4
    assert text.grad is None  # the text [CLS] is detached: the text encoder is frozen


def test_pt_kd_projects_the_speech_vector_and_trains_the_projector() -> None:
    projector = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        projector.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    speech = torch.tensor([[1.0, 2.0, 3.0]])
    loss = pt_kd_loss(speech, torch.tensor([[0.0, 4.0]]), projector)  # projected (1, 5): diffs 1, 1
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # d/dW of mean((W s - t)^2) = 2 (W s - t) s^T / 2
    assert torch.allclose(projector.weight.grad, torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(ConfigError, match="projector"):
        pt_kd_loss(speech, torch.zeros(1, 2))
    with pytest.raises(ConfigError, match="text_cls"):
        pt_kd_loss(torch.zeros(2, 3), torch.zeros(3, 3))


def test_ft_kd_is_ce_plus_l1_summed_over_classes_and_averaged_over_the_batch() -> None:
    student = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    out = ft_kd_loss(student, teacher, labels)
    ce = ((math.log(math.exp(2) + 2) - 2) + (math.log(2 + math.e) - 1)) / 2
    assert out.ce.item() == pytest.approx(ce, rel=1e-6)
    assert out.l1.item() == pytest.approx((2 + 1) / 2)  # not F.l1_loss's (2 + 1) / 6
    assert out.total.item() == pytest.approx(ce + 1.5, rel=1e-6)
    out.total.backward()
    probs = torch.softmax(student.detach(), -1)
    ce_grad = (probs - torch.eye(3)[labels]) / 2
    l1_grad = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) / 2  # sign(s - t) / B
    assert torch.allclose(student.grad, ce_grad + l1_grad, atol=1e-6)
    assert teacher.grad is None
    half = ft_kd_loss(student, teacher, labels, kd_weight=0.5)
    assert half.total.item() == pytest.approx(ce + 0.75, rel=1e-6)


def test_ft_kd_refuses_different_label_sets_and_bad_labels() -> None:
    with pytest.raises(ConfigError, match="3 classes") as err:
        ft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1]))
    assert "same order" in str(err.value)
    with pytest.raises(ConfigError, match="labels"):
        ft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="labels"):
        ft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match="kd_weight"):
        ft_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), kd_weight=-1.0)
    with pytest.raises(ConfigError, match="classes"):
        logit_l1(torch.zeros(2, 3), torch.zeros(2, 4))


def test_the_ft_kd_objective_equals_the_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    labels = torch.tensor([0, 4, 2, 2])
    result = ft_kd_objective(kd_weight=0.7)({"logits": student}, {"logits": teacher}, {"label": labels})
    expected = ft_kd_loss(student, teacher, labels, kd_weight=0.7)
    assert result.total.item() == pytest.approx(expected.total.item(), rel=1e-6)
    assert result.terms["ft_kd"].item() == pytest.approx(expected.l1.item(), rel=1e-6)
    assert result.terms["ce"].item() == pytest.approx(expected.ce.item(), rel=1e-6)
