"""Frames of a video file read with PyAV (``pip install av``): count them, and decode chosen ones to RGB."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from kd_core.errors import DataError


def _open(path: Path) -> Any:
    try:
        import av
        import av.error
    except ImportError as error:
        raise DataError("av", "PyAV installed (it decodes the opencv-doc videos)", "no module named 'av'",
                        hint="pip install av") from error
    try:
        return av.open(str(path))
    except (OSError, av.error.FFmpegError) as error:
        raise DataError("video", "a video file PyAV can open", f"{path} ({error})") from error


def count_frames(path: str | Path) -> int:
    """How many video frames ``path`` holds, counted from its packets (no decoding; the header can be wrong)."""
    with _open(Path(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def read_frames(path: str | Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (0-based, in decoding order) as uint8 RGB arrays ``(H, W, 3)``.

    The file is decoded once from the start; only the wanted frames are converted and kept. A wanted index
    past the last frame is a :class:`DataError`.
    """
    path = Path(path)
    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    if not wanted:
        return frames
    last = max(wanted)
    decoded = 0
    with _open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            decoded = index + 1
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    missing = sorted(wanted - frames.keys())
    if missing:
        raise DataError("frames", f"frame indices below the {decoded} frames decoded from {path.name}",
                        missing[:5])
    return frames
