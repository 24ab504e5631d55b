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

__all__ = ["plot_bars", "plot_loss_curves", "plot_reliability_diagram", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG at ``path`` via a temp file in the same folder; always close ``fig``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return target


def plot_reliability_diagram(results: Mapping[str, CalibrationResult], path: str | os.PathLike[str]) -> Path:
    """One reliability diagram per model, side by side: accuracy per confidence bin as bars against
    the diagonal of perfect calibration, the gap to each bin's mean confidence hatched, ECE in the title.
    """
    if not isinstance(results, Mapping) or not results:
        raise ConfigError("results", "a non-empty dict of model name -> CalibrationResult", results)
    for name, result in results.items():
        if not isinstance(result, CalibrationResult):
            raise ConfigError(f"results[{name!r}]", "a CalibrationResult", type(result).__name__,
                              hint="use kd_core.metrics.expected_calibration_error")
    fig, axes = plt.subplots(1, len(results), figsize=(4.0 * len(results), 4.2), squeeze=False,
                             sharey=True)
    for ax, (name, result) in zip(axes[0], results.items()):
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
        ax.set_aspect("equal")
        ax.set_xlabel("confidence")
        ax.set_title(f"{name}\nECE = {100 * result.ece:.2f}%  (n = {sum(result.bin_count)})")
    axes[0][0].set_ylabel("accuracy")
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
