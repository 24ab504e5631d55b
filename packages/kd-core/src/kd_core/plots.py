"""Figures for run reports: reliability diagrams, loss curves and bar comparisons.

Every function renders off-screen (Agg backend), closes its figure, writes a PNG atomically (a temp
file in the same folder, then ``os.replace``) and returns the path written.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
from matplotlib.figure import Figure

from kd_core.errors import ConfigError
from kd_core.metrics import CalibrationResult

__all__ = ["plot_bars", "plot_epoch_curves", "plot_loss_curves", "plot_reliability_diagram", "reliability_bin_counts",
           "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str], tight: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` via a temp file in the same folder; always close ``fig``.

    ``tight=False`` keeps the figure's own layout instead of trimming it to its contents (a second
    layout pass, slow for figures of many panels)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight" if tight else None)
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return target


def reliability_bin_counts(result: CalibrationResult) -> list[tuple[float, float, int]]:
    """Every confidence bin of ``result`` as ``(low, high, count)``: how many samples the diagram's bar
    over ``(low, high]`` stands for (the numbers ``plot_reliability_diagram`` prints under its bars)."""
    if not isinstance(result, CalibrationResult):
        raise ConfigError("result", "a CalibrationResult", type(result).__name__,
                          hint="use kd_core.metrics.expected_calibration_error")
    return [(low, high, int(count))
            for (low, high), count in zip(itertools.pairwise(result.bin_edges), result.bin_count, strict=True)]


def plot_reliability_diagram(results: Mapping[str, CalibrationResult], path: str | os.PathLike[str]) -> Path:
    """One reliability diagram per model, side by side: accuracy per confidence bin as bars against
    the diagonal of perfect calibration, the gap to each bin's mean confidence hatched, ECE in the title;
    below it a strip of bars with each non-empty bin's sample count printed on it
    (``reliability_bin_counts``), so that a bar resting on three samples reads as such.
    """
    if not isinstance(results, Mapping) or not results:
        raise ConfigError("results", "a non-empty dict of model name -> CalibrationResult", results)
    for name, result in results.items():
        if not isinstance(result, CalibrationResult):
            raise ConfigError(f"results[{name!r}]", "a CalibrationResult", type(result).__name__,
                              hint="use kd_core.metrics.expected_calibration_error")
    fig, axes = plt.subplots(2, len(results), figsize=(4.0 * len(results), 5.4), squeeze=False,
                             sharex=True, sharey="row", gridspec_kw={"height_ratios": [4, 1], "hspace": 0.08})
    most = max([1, *(count for result in results.values() for count in result.bin_count)])
    for column, (name, result) in enumerate(results.items()):
        ax, strip = axes[0][column], axes[1][column]
        edges = result.bin_edges
        lefts = edges[:-1]
        widths = [high - low for low, high in itertools.pairwise(edges)]
        ax.bar(lefts, result.bin_accuracy, width=widths, align="edge", color="tab:blue",
               edgecolor="black", linewidth=0.6, label="accuracy")
        # the gap between confidence and accuracy, only for bins that hold samples
        filled = [i for i, count in enumerate(result.bin_count) if count > 0]
        ax.bar([lefts[i] for i in filled],
               [result.bin_confidence[i] - result.bin_accuracy[i] for i in filled],
               bottom=[result.bin_accuracy[i] for i in filled], width=[widths[i] for i in filled],
               align="edge", color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//",
               linewidth=0.6, label="gap to confidence")
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1.0, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE = {100 * result.ece:.2f}%  (n = {sum(result.bin_count)})")
        # samples per bin: a bar each (log scale: one crowded bin must not flatten the others), count on top
        counts = reliability_bin_counts(result)
        shown = [(low, high, count) for low, high, count in counts if count > 0]
        strip.bar([low for low, _, _ in shown], [count for _, _, count in shown],
                  width=[high - low for low, high, _ in shown], align="edge", color="tab:gray",
                  edgecolor="black", linewidth=0.6)
        strip.set_yscale("log")
        strip.set_ylim(0.8, most * 8)  # (one y axis for every strip: room for the largest count's label)
        strip.set_yticks([])
        strip.minorticks_off()
        for low, high, count in shown:
            strip.text((low + high) / 2, count * 1.15, f"{count:,}", ha="center", va="bottom",
                       fontsize=6 if len(counts) <= 20 else 4, rotation=90 if len(counts) > 10 else 0)
        strip.set_xlabel("confidence")
    axes[0][0].set_ylabel("accuracy")
    axes[1][0].set_ylabel("samples", fontsize="small")
    axes[0][0].legend(loc="upper left", fontsize="small")
    return save_figure(fig, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plot_loss_curves(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    keys: list[str] | None = None,
    x: str = "step",
) -> Path:
    """Loss curves from ``metrics.jsonl`` rows: one line per key, or per (run, key) when rows carry
    a ``"run"`` field. With ``keys=None`` every key starting with ``"loss/"`` is drawn. Rows missing
    ``x`` or a key (or holding a non-number there) are skipped for that line.
    """
    if isinstance(records, Mapping | str | bytes) or not isinstance(records, Sequence):
        raise ConfigError("records", "a list of dicts (metrics.jsonl rows)", type(records).__name__)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ConfigError(f"records[{i}]", "a dict (one metrics.jsonl row)", type(record).__name__)
    if keys is None:
        keys = list(dict.fromkeys(k for record in records for k in record if str(k).startswith("loss/")))
    elif isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise ConfigError("keys", "a list of metric names such as ['loss/total']", keys)
    if not keys:
        raise ConfigError("records", "rows with at least one 'loss/...' key (or pass keys=)",
                          f"{len(records)} rows without any")
    with_runs = any("run" in record for record in records)

    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for record in records:
        step = record.get(x)
        if not _is_number(step):
            continue
        run = str(record.get("run", "")) if with_runs else ""
        for key in keys:
            value = record.get(key)
            if _is_number(value):
                lines.setdefault((run, key), []).append((float(step), float(value)))
    if not lines:
        raise ConfigError("records", f"rows holding {x!r} and one of {keys} as numbers",
                          f"{len(records)} rows without them")

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for (run, key), points in lines.items():
        points.sort(key=lambda point: point[0])  # stable: a resumed run's repeated steps keep their order
        label = f"{run} · {key}" if with_runs else key
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.2,
                marker="." if len(points) == 1 else None)
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_bars(values: Mapping[str, float], path: str | os.PathLike[str], title: str, ylabel: str) -> Path:
    """A bar per entry of ``values`` (e.g. accuracy or latency per model), each labelled with its value."""
    if not isinstance(values, Mapping) or not values:
        raise ConfigError("values", "a non-empty dict of name -> number", values)
    for name, value in values.items():
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"values[{name!r}]", "a finite number", value)
    names = [str(name) for name in values]
    heights = [float(value) for value in values.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2.0), 4.2))
    bars = ax.bar(range(len(names)), heights, color="tab:blue", edgecolor="black", linewidth=0.6)
    ax.bar_label(bars, labels=[f"{h:.4g}" for h in heights], fontsize="small", padding=2)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0,
                  ha="right" if len(names) > 4 else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.12)
    return save_figure(fig, path)


def plot_epoch_curves(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                      path: str | os.PathLike[str], marks: Sequence[tuple[float, str]] = (),
                      xlabel: str = "epoch") -> Path:
    """Small multiples: one panel per entry of ``panels`` (title -> line label -> ``(x, y)`` points), each
    on its own y axis, so that quantities of different scales (accuracy, NLL, a T²-scaled KD loss, CE) are
    never read against one another. ``marks`` draws a dashed vertical line at each ``x`` with its label
    (e.g. where a phase starts) in every panel. Non-finite points are left out.
    """
    if not isinstance(panels, Mapping) or not panels:
        raise ConfigError("panels", "a non-empty dict of title -> {line label: [(x, y), ...]}", panels)
    cleaned: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for title, lines in panels.items():
        if not isinstance(lines, Mapping):
            raise ConfigError(f"panels[{title!r}]", "a dict of line label -> [(x, y), ...]", type(lines).__name__)
        kept = {str(label): [(float(x), float(y)) for x, y in points
                             if _is_number(x) and _is_number(y) and math.isfinite(x) and math.isfinite(y)]
                for label, points in lines.items()}
        cleaned[str(title)] = {label: points for label, points in kept.items() if points}
    columns = min(len(cleaned), 4)
    rows = math.ceil(len(cleaned) / columns)
    width, height = 3.3 * columns, 2.5 * rows
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (title, lines) in zip(flat, cleaned.items()):
        for label, points in lines.items():
            points.sort(key=lambda point: point[0])
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.2,
                    marker="." if len(points) < 30 else None)
        for x, label in marks:
            ax.axvline(x, color="gray", linestyle="--", linewidth=0.8)
            ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", ha="left", va="top", fontsize=6, color="dimgray")
        ax.set_title(title, fontsize="small")
        ax.set_xlabel(xlabel, fontsize="small")
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=6)
        if not lines:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes, fontsize=7)
    for ax in flat[len(cleaned):]:
        ax.set_visible(False)
    # a fixed layout: tight_layout and a tight bounding box each lay out every panel's ticks again
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.35 / height,
                        wspace=0.3, hspace=0.55)
    return save_figure(fig, path, tight=False)
