"""Figures of a class-incremental run: accuracy over all classes seen so far after each task (one line per
variant), and a grid of images per class from several sources (real stream images against generated ones)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
import numpy as np
import torch
from kd_core.errors import ConfigError
from kd_core.plots import save_figure

from kd_vision.cil.metrics import accuracy_after_each_task

__all__ = ["plot_accuracy_per_task", "plot_sample_grid"]


def plot_accuracy_per_task(matrices: Mapping[str, Sequence[Sequence[Sequence[float]]]],
                           path: str | os.PathLike[str], title: str = "Class-incremental digits") -> Path:
    """``matrices[label]`` holds one accuracy matrix per seed; draw the mean A_i (± std band) per task."""
    if not matrices:
        raise ConfigError("matrices", "at least one variant with accuracy matrices", matrices)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, runs in matrices.items():
        if not runs:
            raise ConfigError(f"matrices[{label!r}]", "at least one accuracy matrix", runs)
        curves = np.array([[100 * a for a in accuracy_after_each_task(m)] for m in runs])
        x = np.arange(1, curves.shape[1] + 1)
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("accuracy on all seen classes (%)")
    ax.set_title(title)
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_sample_grid(rows: Mapping[str, torch.Tensor], path: str | os.PathLike[str], mean: float = 0.0,
                     std: float = 1.0, title: str = "") -> Path:
    """One row of images per entry of ``rows`` (``[N, 1, H, W]`` tensors normalised with ``mean``/``std``, shown
    in grey on the 0-1 pixel scale), one column per image; the row's label on its left."""
    if not rows:
        raise ConfigError("rows", "at least one named batch of images", rows)
    columns = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), columns, figsize=(0.75 * columns + 1.6, 0.85 * len(rows) + 0.5),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        if images.ndim != 4 or images.shape[1] != 1:
            raise ConfigError(f"rows[{label!r}]", "a [N, 1, H, W] tensor", tuple(images.shape))
        pixels = (images[:, 0].detach().cpu().float() * std + mean).clamp(0, 1).numpy()
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(pixels):
                ax.imshow(pixels[c], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="small")
    return save_figure(fig, path)
