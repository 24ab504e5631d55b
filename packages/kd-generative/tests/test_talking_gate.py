"""The talking-face gate: the mouth box (where the renderer draws the lips and inner mouth) by hand, mouth-box PSNR
by hand, and the gate's verdicts for a teacher that does or does not beat copying the reference frame."""

from __future__ import annotations

import math

import torch
from kd_generative.methods.wav2lip_report import gate_verdict
from kd_generative.talking.render import MAX_WIDTH, mouth_box, render_mouths
from kd_generative.tasks.talking_eval import mouth_psnr


def test_the_mouth_box_by_hand() -> None:
    # 24 px, mouth at row 0.75 (18 px), column 0.5 (12 px), half-width 0.125 (3 px); MAX_WIDTH is 1.3:
    # rows 18 - 1.5 = 16.5 -> 16 to 18 + 3.6 = 21.6 -> 22; columns 12 -+ 0.8 * 1.3 * 3 = 3.12 -> 8 to 16
    assert MAX_WIDTH == 1.3
    assert mouth_box((0.75, 0.5, 0.125), 24) == (slice(16, 22), slice(8, 16))
    # 20 px, row 19, column 1, half-width 4: rows 17 to 23.8 -> 20, columns 1 -+ 4.16 -> 0 to 6 (clipped)
    assert mouth_box((0.95, 0.05, 0.2), 20) == (slice(17, 20), slice(0, 6))


def test_the_inner_mouth_and_teeth_lie_inside_the_box() -> None:
    face = torch.full((1, 3, 48, 48), 0.7)  # flat skin: the warp changes nothing, the drawn mouth everything
    mouth = torch.tensor([[0.75, 0.5, 0.125]])
    closed = render_mouths(face, mouth, torch.tensor([[0.0, 1.0]]))
    wide_open = render_mouths(face, mouth, torch.tensor([[0.95, MAX_WIDTH]]))
    change = (wide_open - closed).abs().sum(1)[0]
    rows, cols = mouth_box((0.75, 0.5, 0.125), 48)
    assert change.sum() > 10 and change[rows, cols].sum() > 0.97 * change.sum()


def test_mouth_psnr_by_hand() -> None:
    target = torch.zeros(2, 1, 3, 8, 8)
    frames = target.clone()
    frames[0, :, :, 4:6, 2:4] = 0.1   # inside window 0's box: MSE 0.01 over the box -> 20 dB
    frames[0, :, :, 0, 0] = 1.0       # outside the box: ignored
    frames[1, :, :, 5:7, 1:5] = 0.01  # window 1's whole box: MSE 1e-4 -> 40 dB
    boxes = [(slice(4, 6), slice(2, 4)), (slice(5, 7), slice(1, 5))]
    assert math.isclose(mouth_psnr(frames, target, boxes), (20 + 40) / 2, rel_tol=1e-5)


def test_the_gate_asks_for_a_mouth_lead_and_better_lip_sync() -> None:
    copy = {"psnr": 25.8, "psnr_mouth": 18.2, "lse_c": 0.09}
    good = {"psnr": 25.3, "psnr_mouth": 19.4, "lse_c": 0.39}
    students = {"kd": {"psnr_mouth": 18.9, "lse_c": 0.3}, "scratch": {"psnr_mouth": 18.0, "lse_c": 0.3}}
    text = gate_verdict(copy, good, students)
    assert text.startswith("Gate passed") and "**scratch**" in text and "**kd**" not in text
    assert gate_verdict(copy, {**good, "psnr_mouth": 18.9}, {}).startswith("**Gate failed**")  # lead 0.7 < 1 dB
    assert gate_verdict(copy, {**good, "lse_c": 0.05}, {}).startswith("**Gate failed**")  # no lip sync
    assert gate_verdict(copy, {"psnr": 25.0}, {}).startswith("Gate: not judged")
