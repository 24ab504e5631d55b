"""opencv-doc's Megamind clip read at run time: face crops at 25 fps and the speech track's mel, aligned in
windows the expert can score. Skipped without opencv-doc, failed on CI (the ``opencv_doc`` fixture)."""

from __future__ import annotations

from pathlib import Path

import torch
from kd_generative.talking.expert import SyncExpert
from kd_generative.talking.lipsync import lip_sync
from kd_generative.talking.megamind import read_megamind


def test_megamind_frames_and_speech_are_aligned(opencv_doc: Path) -> None:
    clip = read_megamind(opencv_doc, size=24, detect_every=4, max_frames=48)
    n = clip.frames.shape[0]
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape[1:] == (3, 24, 24)
    assert 45 <= n <= 50  # 48 frames at 24 fps are 2 s: 50 frames at 25 fps, less before the first face
    assert clip.mel.shape[0] == 80 and clip.mel.shape[1] > 80 * 10  # the whole 11 s track
    assert clip.skipped_packets <= 2
    windows = clip.windows()
    assert len(windows) == n - 4
    frames, mel = windows[0]
    assert frames.shape == (5, 3, 24, 24) and mel.shape == (1, 80, 16) and frames.max() <= 1
    assert frames.std() > 0.05 and mel.std() > 0.1  # real pixels and real speech, not padding
    expert = SyncExpert(size=24, width=4, audio_width=4, embed=8)
    scores = lip_sync(expert, clip.frames.float() / 255, clip.mel, max_offset=3)
    assert len(scores.curve) == 7 and scores.confidence >= 0
