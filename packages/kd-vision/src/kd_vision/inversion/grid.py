"""A PNG grid of synthetic images: one row per class, the first few images of each class."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from kd_core.errors import ConfigError
from kd_core.plots import save_figure  # the backend is chosen above, before pyplot is imported

__all__ = ["plot_image_grid"]


def plot_image_grid(images: torch.Tensor, labels: torch.Tensor, path: str | os.PathLike, per_class: int = 10,
                    title: str = "") -> Path:
    """Write a grid (rows: classes, columns: up to ``per_class`` images) of ``images`` ``[N, C, H, W]``.

    Each image is min-max scaled on its own; one-channel images are shown in grey, three-channel ones in
    colour (other channel counts show their mean). The PNG is written atomically; returns its path.
    """
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ConfigError("images", "a non-empty batch [N, C, H, W] with one label each",
                          f"{tuple(images.shape)} images, {len(labels)} labels")
    classes = sorted({int(c) for c in labels.tolist()})
    columns = max(1, min(per_class, max(int((labels == c).sum()) for c in classes)))
    fig, axes = plt.subplots(len(classes), columns, figsize=(0.8 * columns + 0.6, 0.8 * len(classes) + 0.4),
                             squeeze=False)
    for row, c in enumerate(classes):
        chosen = images[labels == c][:columns].detach().float().cpu()
        for col in range(columns):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(chosen):
                ax.axis("off")
                continue
            image = chosen[col]
            image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
            if image.shape[0] == 3:
                ax.imshow(image.permute(1, 2, 0).numpy())
            else:
                ax.imshow(image.mean(0).numpy(), cmap="gray")
            if col == 0:
                ax.set_ylabel(str(c), rotation=0, labelpad=10)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
