"""PGD on normalised digits: it raises the loss, stays in the ε-ball and the valid range, leaves BN alone."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_vision.attacks import (
    PGD,
    LogitScale,
    correct_under,
    cw_margin,
    dlr_loss,
    robust_accuracy,
    soft_or_hard_cross_entropy,
)
from kd_vision.data.digits import MEAN, STD, make_splits
from kd_vision.models import build_model


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """32 real 8x8 digits, normalised like the training data."""
    test = make_splits("sklearn8x8", train_size=32, val_size=0, test_size=0, seed=0)["train"]
    items = [test[i] for i in range(len(test))]
    return {"input": torch.stack([i["input"] for i in items]), "label": torch.stack([i["label"] for i in items])}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("student-cnn")


def test_pgd_raises_the_loss_and_stays_within_epsilon_and_the_pixel_range(digits) -> None:
    model, x, y = _model().eval(), digits["input"], digits["label"]
    attack = PGD(epsilon=0.1, step_size=0.025, steps=10, mean=MEAN, std=STD)
    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0))
    noise = (torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 0.1 / STD
    x_noise = torch.clamp(x + noise, -MEAN / STD, (1 - MEAN) / STD)
    with torch.no_grad():
        clean, adv = soft_or_hard_cross_entropy(model(x), y), soft_or_hard_cross_entropy(model(x_adv), y)
        random = soft_or_hard_cross_entropy(model(x_noise), y)
    assert adv > clean and adv > random  # the gradient steps beat a random corner of the same ball
    pixels, pixels_adv = x * STD + MEAN, x_adv * STD + MEAN
    assert (pixels_adv - pixels).abs().max() <= 0.1 + 1e-5
    assert pixels_adv.min() >= -1e-5 and pixels_adv.max() <= 1 + 1e-5
    assert (pixels_adv - pixels).abs().max() > 0.09  # it did move to the ball's edge somewhere
    assert all(p.grad is None for p in model.parameters())  # only input gradients were taken


def test_an_attack_leaves_batchnorm_statistics_and_the_model_mode_unchanged(digits) -> None:
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    PGD(0.1, 0.025, 3, mean=MEAN, std=STD)(model, digits["input"], digits["label"])
    assert model.training and model.features[1].training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    model(digits["input"])  # a training-mode forward does move them: the check above can fail
    assert not torch.equal(model.features[1].running_mean, before["features.1.running_mean"])


def test_epsilon_zero_gives_clean_accuracy(digits) -> None:
    model = _model()
    batches = [digits]
    clean = correct_under(model, batches)
    zero = correct_under(model, batches, PGD(0.0, 0.01, 5, mean=MEAN, std=STD))
    assert torch.equal(clean, zero)
    assert torch.equal(PGD(0.0, 0.01, 5)(model, digits["input"], digits["label"]), digits["input"])


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"epsilon": -0.1, "step_size": 0.01, "steps": 3}, "epsilon"),
    ({"epsilon": 0.1, "step_size": 0.0, "steps": 3}, "step_size"),
    ({"epsilon": 0.1, "step_size": 0.01, "steps": 0}, "steps"),
    ({"epsilon": 0.1, "step_size": 0.01, "steps": 3, "loss": "hinge"}, "loss"),
    ({"epsilon": 0.1, "step_size": 0.01, "steps": 3, "restarts": 0}, "restarts"),
])
def test_bad_attack_settings_name_the_argument(kwargs, argument) -> None:
    with pytest.raises(ConfigError) as error:
        PGD(**kwargs)
    assert error.value.argument == argument


def test_losses_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    # margin: max other − true: row 0: 1 − 2 = −1; row 1: 3 − 1 = 2
    assert float(cw_margin(logits, labels)) == pytest.approx(1.0)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    assert float(soft_or_hard_cross_entropy(logits, one_hot)) == pytest.approx(
        float(soft_or_hard_cross_entropy(logits, labels)), rel=1e-6)
    assert float(cw_margin(logits, one_hot)) == pytest.approx(1.0)  # soft labels: their argmax is y


def test_logit_scale_keeps_predictions_and_rejects_a_bad_scale(digits) -> None:
    model = _model().eval()
    scaled = LogitScale(model, 0.01)
    with torch.no_grad():
        assert torch.allclose(scaled(digits["input"]), model(digits["input"]) * 0.01)
    with pytest.raises(ConfigError, match="scale"):
        LogitScale(model, 0.0)


def test_worst_case_is_per_sample_over_white_box_attacks_only(digits) -> None:
    model, source = _model(), build_model("student-cnn")
    attack = PGD(0.3, 0.05, 5, mean=MEAN, std=STD)
    result = robust_accuracy(model, [digits], {"clean": (None, None), "pgd": (attack, None),
                                               "transfer": (attack, source)}, transfer=["transfer"])
    assert result["pgd"] <= result["clean"]
    assert result["worst"] <= min(result["clean"], result["pgd"])
    hits = correct_under(model, [digits]) & correct_under(model, [digits], attack)
    assert result["worst"] == pytest.approx(float(hits.float().mean()))


def test_dlr_loss_by_hand_and_its_invariance_to_shifting_and_scaling_the_logits() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.0], [0.0, 3.0, 1.0, -2.0]])
    labels = torch.tensor([0, 2])
    # row 0: sorted 2, 1, 0, −1; −(2 − 1)/(2 − 0) = −0.5. Row 1: sorted 3, 1, 0, −2; −(1 − 3)/(3 − 0) = 2/3
    assert float(dlr_loss(logits, labels)) == pytest.approx(-0.5 + 2 / 3, rel=1e-6)
    assert float(dlr_loss(100 * logits + 7, labels)) == pytest.approx(float(dlr_loss(logits, labels)), rel=1e-5)
    with pytest.raises(ConfigError, match="3 classes"):
        dlr_loss(torch.zeros(2, 2), torch.tensor([0, 1]))


def _trained_linear() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A logistic regression fit (L-BFGS) on 500 real 8x8 digits, and 64 held-out digits it mostly gets right."""
    splits = make_splits("sklearn8x8", train_size=500, val_size=0, test_size=64, seed=0)

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        items = [splits[split][i] for i in range(len(splits[split]))]
        return torch.stack([i["input"] for i in items]), torch.stack([i["label"] for i in items])

    (x, y), (test_x, test_y) = stack("train"), stack("test")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return model.eval(), {"input": test_x, "label": test_y}


def test_restarts_keep_every_sample_the_first_start_fooled_and_fool_more() -> None:
    model, test = _trained_linear()
    assert int((~correct_under(model, [test])).sum()) <= 4  # a sound model: the attack has work to do
    one = PGD(0.05, 0.0125, 3, mean=MEAN, std=STD)
    five = PGD(0.05, 0.0125, 3, mean=MEAN, std=STD, restarts=5)
    fooled_once = ~correct_under(model, [test], one, seed=3)
    fooled_five = ~correct_under(model, [test], five, seed=3)  # the same generator: the same first start
    assert bool((fooled_five | ~fooled_once).all())  # every sample fooled by the first start stays fooled
    assert int(fooled_five.sum()) > int(fooled_once.sum())  # fresh starts find more (9 against 6 here)
    x_adv = five(model, test["input"], test["label"], generator=torch.Generator().manual_seed(0))
    assert ((x_adv - test["input"]) * STD).abs().max() <= 0.05 + 1e-5  # every restart stays in the ball
