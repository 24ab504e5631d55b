"""The accuracy-per-task plot: accuracy over all classes seen so far after each task, one line per variant."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
import numpy as np
from kd_core.errors import ConfigError
from kd_core.plots import save_figure

from kd_vision.cil.metrics import accuracy_after_each_task

__all__ = ["plot_accuracy_per_task"]




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
