"""Reports of the ``kd-edge`` commands: a size–accuracy–latency plot, result tables and the JSON beside them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
from kd_core.errors import ConfigError
from kd_core.plots import save_figure
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir

__all__ = ["finish_run", "plot_size_accuracy_latency"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plot_size_accuracy_latency(points: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
                               title: str = "Size, accuracy and latency") -> Path:
    """One marker per model: accuracy against latency (marker area grows with size on disk) and accuracy
    against size. Each point needs ``name``, ``size_bytes``, ``latency_ms`` and ``accuracy`` (a fraction, or
    ``None``: then latency is drawn against size alone)."""
    if not points:
        raise ConfigError("points", "at least one model (name, size_bytes, latency_ms, accuracy)", points)
    for i, point in enumerate(points):
        if not all(_number(point.get(key)) for key in ("size_bytes", "latency_ms")) or "name" not in point:
            raise ConfigError(f"points[{i}]", "name, size_bytes and latency_ms as finite numbers", dict(point))
    with_accuracy = all(_number(p.get("accuracy")) for p in points)
    sizes_mb = [p["size_bytes"] / 2 ** 20 for p in points]
    largest = max(sizes_mb) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (point, size) in enumerate(zip(points, sizes_mb, strict=True)):
        colour = colours[i % len(colours)]
        y = 100 * point["accuracy"] if with_accuracy else size
        area = 40 + 400 * size / largest
        axes[0].scatter(point["latency_ms"], y, s=area, color=colour, alpha=0.7, edgecolor="black",
                        label=f"{point['name']} ({size:.2f} MB)")
        if with_accuracy:
            axes[1].scatter(size, y, s=60, color=colour, edgecolor="black")
        else:
            axes[1].bar(i, point["latency_ms"], color=colour, edgecolor="black")
    axes[0].set_xlabel("latency p50 (ms)")
    axes[0].set_ylabel("accuracy (%)" if with_accuracy else "size on disk (MB)")
    axes[0].set_title("marker area ∝ size on disk (colours: legend)")
    axes[0].legend(fontsize="x-small", loc="best")
    if with_accuracy:
        axes[1].set_xlabel("size on disk (MB)")
        axes[1].set_ylabel("accuracy (%)")
    else:
        axes[1].set_xticks(range(len(points)), [p["name"] for p in points], rotation=30, ha="right")
        axes[1].set_ylabel("latency p50 (ms)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)


def finish_run(run: RunDir, title: str, summary: str, tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
               points: Sequence[Mapping[str, Any]], results: Mapping[str, Any], notes: str = "") -> Path:
    """Write ``results.json``, ``plots/size_accuracy_latency.png`` and ``report.md`` (summary, tables, notes,
    the command that reproduces the run, the plot); return the report's path."""
    run.write_json("results.json", results)
    plot = plot_size_accuracy_latency(points, run.plots / "size_accuracy_latency.png", title=title)
    sections = [("Summary", summary)]
    sections += [(heading, markdown_table(rows)) for heading, rows in tables if rows]
    if notes:
        sections.append(("Notes", notes))
    sections.append(("Reproduce", f"```\n{command_line()}\n```\nEnvironment in `env.json`, settings in "
                                  f"`config.yaml`, every figure in `results.json`.\n"))
    return write_report(run, title, sections, plots=[("Size, accuracy and latency", plot)])
