"""Frame strips for talking-face reports: one row per source (the masked input, the teacher, each student, the
real frames), one column per consecutive video frame, written as a PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from kd_core.errors import ConfigError

__all__ = ["frame_strip"]


def frame_strip(rows: Mapping[str, torch.Tensor], path: str | os.PathLike[str], cell: float = 0.9,
                first_frame: int = 0) -> Path:
    """Write ``rows`` (label -> frames ``(F, 3, S, S)`` in [0, 1], the same ``F`` and size for every row) to
    ``path`` as a grid: rows titled by their labels, columns by frame index (from ``first_frame``).
    ``cell``: inches per frame."""
    if not rows:
        raise ConfigError("rows", "at least one row of frames", 0)
    shapes = {name: tuple(frames.shape) for name, frames in rows.items()}
    for name, shape in shapes.items():
        if len(shape) != 4 or shape[1] != 3 or shape[0] < 1:
            raise ConfigError(f"rows[{name!r}]", "frames (F, 3, S, S)", shape)
    if len(set(shapes.values())) != 1:
        raise ConfigError("rows", "frames of the same count and size in every row", shapes)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    count = next(iter(shapes.values()))[0]
    width = cell * count + 1.2  # inches: the frames and the row labels
    fig, axes = plt.subplots(len(rows), count, figsize=(width, cell * len(rows)), squeeze=False)
    for i, (name, frames) in enumerate(rows.items()):
        shown = frames.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for j in range(count):
            axes[i][j].imshow(shown[j], interpolation="nearest")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(f"frame {first_frame + j}", fontsize="x-small")
        axes[i][0].set_ylabel(name, fontsize="small", rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.04, hspace=0.04, left=1.1 / width)
    return save_figure(fig, path)
