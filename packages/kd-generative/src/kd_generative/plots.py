"""Figures for kd-generative reports: a grid of images, one column per source (input, teacher, students, target)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from kd_core.errors import ConfigError

__all__ = ["image_grid"]


def _displayable(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W, 3]`` floats in [0, 1] from ``[N, C, H, W]`` in [-1, 1] (one channel repeated to three)."""
    images = ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images[:, :3].permute(0, 2, 3, 1)


def image_grid(columns: Mapping[str, torch.Tensor], path: str | os.PathLike[str], rows: int | None = None,
               cell: float = 1.2) -> Path:
    """Write a PNG grid to ``path``: one column per entry of ``columns`` (titled by its key), one row per image.

    Every value is ``[N, C, H, W]`` with C = 1 or 3 and values in [-1, 1], all with the same N; ``rows`` keeps
    the first that many. ``cell``: inches per image."""
    if not columns:
        raise ConfigError("columns", "at least one column of images", 0)
    counts = {name: int(images.shape[0]) for name, images in columns.items()}
    for name, images in columns.items():
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ConfigError(f"columns[{name!r}]", "images [N, C, H, W] with C = 1 or 3", tuple(images.shape))
    if len(set(counts.values())) != 1:
        raise ConfigError("columns", "the same number of images in every column", counts)
    n = min(next(iter(counts.values())), rows or 10**9)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    fig, axes = plt.subplots(n, len(columns), figsize=(cell * len(columns), cell * n), squeeze=False)
    for j, (name, images) in enumerate(columns.items()):
        shown = _displayable(images[:n])
        for i in range(n):
            axes[i][j].imshow(shown[i].numpy(), interpolation="nearest")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
        axes[0][j].set_title(name, fontsize="small")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return save_figure(fig, path)
