"""The trivial baselines of an image-to-image task and the gate sentences built from them."""

from __future__ import annotations

import pytest
import torch
from kd_generative.data.paired import PairSplit
from kd_generative.tasks.baselines import baseline_scores, gate_text, students_below


def _split(targets: torch.Tensor, inputs: torch.Tensor) -> PairSplit:
    return PairSplit(inputs, targets, tuple(f"p{i}" for i in range(len(targets))))


def test_mean_colour_and_input_copy_by_hand() -> None:
    """Train targets of mean colour (0.5, 0, -0.5); a test target of exactly that colour scores inf dB under the
    mean-colour guess, and a grey copy one level off every pixel scores 20·log10(2 / 0.1) = 26.02 dB."""
    colour = torch.tensor([0.5, 0.0, -0.5]).view(1, 3, 1, 1)
    train = _split(colour.expand(4, 3, 16, 16) + torch.tensor([0.1, -0.1, 0.1, -0.1]).view(4, 1, 1, 1),
                   torch.zeros(4, 1, 16, 16))
    grey = torch.full((2, 1, 16, 16), 0.3)
    test = _split(torch.cat([colour.expand(1, 3, 16, 16), (grey[1:] + 0.1).expand(1, 3, 16, 16)]), grey)
    scores = baseline_scores(train, test, "grey")
    assert set(scores) == {"mean colour", "input copy"}
    copy_alone = baseline_scores(train, _split(test.targets[1:].repeat(2, 1, 1, 1), grey), "grey")["input copy"]
    assert copy_alone["psnr"] == pytest.approx(26.0206, abs=1e-3)
    assert "input copy" not in baseline_scores(train, test, "edges")  # an edge map is no copy of the scene


def test_gate_passes_and_fails_on_the_margin() -> None:
    baselines = {"mean colour": {"psnr": 13.0, "ssim": 0.2}, "input copy": {"psnr": 22.0, "ssim": 0.9}}
    assert gate_text(baselines, 23.5).startswith("Gate passed")
    failed = gate_text(baselines, 22.5)
    assert "Gate failed" in failed and "input copy" in failed and "0.50 dB" in failed
    assert gate_text({}, 20.0).startswith("Gate: not judged")


def test_students_below_the_baseline_are_named() -> None:
    baselines = {"input copy": {"psnr": 22.0, "ssim": 0.9}}
    sentence = students_below(baselines, {"kd": 21.7, "scratch": 22.3})
    assert "**kd** (21.70 dB)" in sentence and "scratch" not in sentence
    assert students_below(baselines, {"scratch": 22.3}) == ""
