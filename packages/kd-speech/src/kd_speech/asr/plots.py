"""Plots of rescoring results: WER before and after, per LM and per test set, as grouped bars."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from kd_core.errors import ConfigError

__all__ = ["plot_wer_bars", "plot_wer_vs_size"]

#: (mean, half-width of its interval or None): one bar
Bar = tuple[float, float | None]


def plot_wer_bars(groups: Mapping[str, Mapping[str, Bar]], path: str | os.PathLike[str], title: str) -> Path:
    """Grouped bars: one group per entry of ``groups`` (e.g. "commands · lattice"), one bar per model in it
    (decoder 1-best, each LM), WER in %, labelled, with the interval as a whisker where one is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    if not groups or not all(groups.values()):
        raise ConfigError("groups", "a non-empty dict of group -> {bar: (mean, half-width)}", groups)
    bars = list(dict.fromkeys(name for group in groups.values() for name in group))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + len(groups) * (0.45 * len(bars) + 0.6)), 4.4))
    colors = plt.get_cmap("tab10")
    for j, name in enumerate(bars):
        xs, heights, errors = [], [], []
        for i, group in enumerate(groups.values()):
            if name in group and math.isfinite(group[name][0]):
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                heights.append(100.0 * group[name][0])
                half = group[name][1]
                errors.append(100.0 * half if half is not None and math.isfinite(half) else 0.0)
        if not xs:
            continue
        drawn = ax.bar(xs, heights, width, yerr=errors if any(errors) else None, capsize=3, label=name,
                       color=colors(j % 10), edgecolor="black", linewidth=0.5)
        ax.bar_label(drawn, labels=[f"{h:.1f}" for h in heights], fontsize=6, padding=2)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel("WER (%)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.15)
    ax.legend(fontsize="small", ncols=min(len(bars), 6), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return save_figure(fig, path)


def plot_wer_vs_size(points: Mapping[str, tuple[float, Mapping[str, float]]], baseline: Mapping[str, float],
                     path: str | os.PathLike[str], title: str) -> Path:
    """WER against LM parameters (log axis): one colour per metric, one marker shape per LM (LMs of one size side
    by side); the decoder's 1-best of each metric as a dashed line. ``points``: LM name -> (parameters,
    {metric: WER}); ``baseline``: metric -> 1-best WER."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure
    from matplotlib.lines import Line2D

    if not points:
        raise ConfigError("points", "at least one LM", points)
    metrics = list(dict.fromkeys(m for _, values in points.values() for m in values))
    markers = "sovD^<>p*"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.get_cmap("tab10")
    sizes: dict[float, list[str]] = {}
    for name, (params, _) in points.items():
        sizes.setdefault(params, []).append(name)
    for k, (name, (params, values)) in enumerate(points.items()):
        same = sizes[params]
        x = params * 1.06 ** (same.index(name) - (len(same) - 1) / 2)  # LMs of one size side by side
        for j, metric in enumerate(metrics):
            if metric in values and math.isfinite(values[metric]):
                ax.scatter([x], [100.0 * values[metric]], color=colors(j % 10), marker=markers[k % len(markers)],
                           s=40, edgecolors="black", linewidths=0.5, zorder=3)
    shown = [100.0 * v for _, values in points.values() for v in values.values() if math.isfinite(v)]
    for j, metric in enumerate(metrics):
        if metric in baseline and math.isfinite(baseline[metric]):
            ax.axhline(100.0 * baseline[metric], color=colors(j % 10), linestyle="--", linewidth=0.8)
            shown.append(100.0 * baseline[metric])
    if shown:
        pad = max(1.0, 0.08 * (max(shown) - min(shown)))
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
    handles = [Line2D([], [], color=colors(j % 10), linestyle="--", label=f"{m} (dashed: 1-best)")
               for j, m in enumerate(metrics)]
    handles += [Line2D([], [], color="gray", marker=markers[k % len(markers)], linestyle="", label=name)
                for k, name in enumerate(points)]
    ax.set_xscale("log")
    ax.set_xlabel("LM parameters")
    ax.set_ylabel("WER (%)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, path)
