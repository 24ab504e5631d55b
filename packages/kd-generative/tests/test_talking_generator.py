"""The Wav2Lip-style generator: shapes with and without a time axis, the compact student's size, bad input."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_generative.talking.blocks import count_residual_blocks
from kd_generative.talking.generator import TalkingFaceGenerator, build_generator, compression_ratios


@pytest.mark.parametrize("size", [24, 48])
def test_generator_shapes(size: int) -> None:
    torch.manual_seed(0)
    model = build_generator(size, width=4, audio_width=8, residuals=1).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 5, 6, size, size), torch.randn(2, 5, 1, 80, 16))
        single = model(torch.rand(3, 6, size, size), torch.randn(3, 1, 80, 16))
    assert out.shape == (2, 5, 3, size, size) and single.shape == (3, 3, size, size)
    assert out.min() >= 0 and out.max() <= 1


def test_compact_student_removes_residual_blocks_and_cuts_width() -> None:
    teacher, student = build_generator(48).eval(), build_generator(48, compact=True).eval()
    assert count_residual_blocks(teacher) > 10 and count_residual_blocks(student) == 0
    ratios = compression_ratios(teacher, student, 48)
    assert 20 < ratios["params"] < 50 and ratios["macs"] > 20
    shallow = TalkingFaceGenerator(48, width=16, residuals=[0, 1, 1, 1, 1, 0])
    assert count_residual_blocks(shallow) < count_residual_blocks(teacher)


def test_bad_sizes_and_inputs() -> None:
    with pytest.raises(ConfigError):
        build_generator(50)
    with pytest.raises(ConfigError):
        TalkingFaceGenerator(24, residuals=[1, 1])
    model = build_generator(24, compact=True).eval()
    with pytest.raises(ConfigError):
        model(torch.rand(1, 6, 48, 48), torch.randn(1, 1, 80, 16))
