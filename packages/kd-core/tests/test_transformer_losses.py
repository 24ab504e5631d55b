"""Hand-computed checks for kd_core.transformer_losses: masked feature MSE, pre-softmax attention MSE, and
plain Terms that pass the padding mask as an input."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.objective import Objective, Term
from kd_core.transformer_losses import (
    AttentionScoreMSE,
    MaskedHiddenMSE,
    attention_score_mse,
    attention_scores,
    masked_mse,
    query_key,
)
from torch import nn


class SelfAttention(nn.Module):
    """The smallest module with the Hugging Face layout: query/key projections and a head count."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.query, self.key = nn.Linear(width, width, bias=False), nn.Linear(width, width, bias=False)
        self.num_attention_heads = heads


def test_masked_mse_by_hand() -> None:
    s = torch.tensor([[[1.0, 1.0], [5.0, 5.0]], [[0.0, 2.0], [0.0, 0.0]]])
    t = torch.zeros(2, 2, 2)
    assert masked_mse(s, t).item() == pytest.approx((1 + 1 + 25 + 25 + 0 + 4 + 0 + 0) / 8)
    mask = torch.tensor([[1, 0], [1, 0]])  # the 5s and the last token are padding
    assert masked_mse(s, t, mask).item() == pytest.approx((1 + 1 + 0 + 4) / 4)
    with pytest.raises(ConfigError, match="mask"):
        masked_mse(s, t, torch.ones(2, 3))
    with pytest.raises(ConfigError, match="teacher"):
        masked_mse(s, torch.zeros(2, 2, 3))


def test_attention_score_mse_by_hand() -> None:
    s = torch.tensor([[[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 9.0]]]])  # [1, 1, 3, 3]
    t = torch.zeros_like(s)
    assert attention_score_mse(s, t).item() == pytest.approx((4 + 81) / 9)
    # the third token is padding: its row and column leave the mean (4 pairs remain)
    assert attention_score_mse(s, t, torch.tensor([[1, 1, 0]])).item() == pytest.approx(4 / 4)
    with pytest.raises(ConfigError, match="scores"):
        attention_score_mse(s[0], t[0])


def test_attention_scores_are_qk_over_sqrt_dk() -> None:
    module = SelfAttention(4, heads=2)
    with torch.no_grad():
        module.query.weight.copy_(torch.eye(4))
        module.key.weight.copy_(2 * torch.eye(4))
    hidden = torch.tensor([[[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 2.0]]])  # [1, 2, 4]
    scores = attention_scores(module, hidden)
    assert scores.shape == (1, 2, 2, 2)
    # head 0 sees dims 0-1: q = (1, 0), (0, 1); k = 2q; d_k = 2 -> q·k / √2
    assert torch.allclose(scores[0, 0], torch.tensor([[2.0, 0.0], [0.0, 2.0]]) / 2 ** 0.5)
    # head 1 sees dims 2-3: q = (1, 1), (0, 2) -> q·k = [[4, 4], [4, 8]]
    assert torch.allclose(scores[0, 1], torch.tensor([[4.0, 4.0], [4.0, 8.0]]) / 2 ** 0.5)


def test_attention_loss_trains_student_projections_only() -> None:
    torch.manual_seed(0)
    student, teacher = SelfAttention(4, 2), SelfAttention(8, 2)
    loss = AttentionScoreMSE(student, teacher)
    value = loss(torch.randn(2, 3, 4), torch.randn(2, 3, 8), mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    value.backward()
    assert student.query.weight.grad is not None and student.query.weight.grad.abs().sum() > 0
    assert teacher.query.weight.grad is None
    with pytest.raises(ConfigError, match="average_heads"):
        AttentionScoreMSE(SelfAttention(4, 1), teacher)
    with pytest.raises(ConfigError, match="attention module"):
        query_key(nn.Linear(2, 2))


def test_shared_projection_is_held_once_and_the_term_passes_the_mask() -> None:
    projection = nn.Linear(2, 3)
    first, second = MaskedHiddenMSE(projection), MaskedHiddenMSE(shared=projection)
    objective = Objective(Term("a", first, student="x", teacher="x", inputs={"mask": "attention_mask"}),
                          Term("b", second, student="y", teacher="y", inputs={"mask": "attention_mask"}))
    assert len(list(objective.parameters())) == 2 and len(objective.state_dict()) == 2
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        projection.bias.zero_()
    features = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    student = {"x": features, "y": features}
    teacher = {"x": torch.zeros(1, 2, 3), "y": torch.zeros(1, 2, 3)}
    result = objective(student, teacher, {"attention_mask": torch.tensor([[1, 0]])})
    assert result.terms["a"].item() == pytest.approx(2 / 3) and result.terms["b"].item() == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match=r"a\.inputs\.mask"):
        objective(student, teacher, {})
