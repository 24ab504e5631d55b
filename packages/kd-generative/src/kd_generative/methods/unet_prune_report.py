"""Report sections of the ``unet-inner``/``unet-global`` studies (Kim, Choi and Park, "Cut Inner Layers: A Structured
Pruning Strategy for Efficient U-Net GANs", arXiv:2206.14658, 2022): the teacher's per-layer sensitivity against
layer index (the paper's U-shaped curve), its inner/outer ratio, what each arm pruned, and a sample grid with every
arm's pruned student.

Layer index follows the data through the U-Net: the encoders from the outermost level to the bottleneck, then the
decoders back out, so layers near the bottleneck sit in the middle of the plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kd_core.report import markdown_table
from kd_core.structure import UNetStructure

__all__ = ["CRITERION", "layer_places", "placed_rows", "plot_sensitivity", "pruning_rows",
           "sensitivity_ratios", "sensitivity_section"]

#: The spec's pass criterion: inner layers at least 3× less sensitive than outer ones (inner/outer ≤ 1/3).
CRITERION = 1.0 / 3.0
MARKERS = {"encoder": "o", "decoder": "s"}


def layer_places(structure: UNetStructure, layers: Sequence[str]) -> dict[str, tuple[int, str]]:
    """``{layer path: (level, "encoder"|"decoder")}`` for every layer inside a level's encoder or decoder module."""
    places: dict[str, tuple[int, str]] = {}
    for layer in layers:
        for index, level in enumerate(structure.levels):
            for side, path in (("encoder", level.encoder), ("decoder", level.decoder)):
                if layer == path or layer.startswith(path + "."):
                    places[layer] = (index, side)
    return places


def _order(place: tuple[int, str], depth: int) -> int:
    level, side = place
    return level if side == "encoder" else 2 * depth - 1 - level


def placed_rows(rows: Sequence[Mapping[str, Any]], structure: UNetStructure) -> list[dict[str, Any]]:
    """The scan's rows with each layer's ``level``, ``side`` and ``index`` (its position along the data's path,
    from 0), sorted by index then ratio; layers outside the levels are left out."""
    places = layer_places(structure, [str(r["layer"]) for r in rows])
    order = sorted({r["layer"] for r in rows if r["layer"] in places},
                   key=lambda layer: (_order(places[layer], structure.depth), layer))
    index = {layer: i for i, layer in enumerate(order)}
    placed = [{**row, "level": places[row["layer"]][0], "side": places[row["layer"]][1],
               "index": index[row["layer"]]} for row in rows if row["layer"] in places]
    return sorted(placed, key=lambda r: (r["index"], r["ratio"]))


def sensitivity_ratios(rows: Sequence[Mapping[str, Any]], depth: int, inner_levels: int) -> dict[float, float]:
    """Per ratio, the mean score of the layers of the innermost ``inner_levels`` levels over the mean score of the
    other levels' layers (``placed_rows``); nan where one side has no layer or the outer mean is 0."""
    first = depth - inner_levels
    ratios: dict[float, float] = {}
    for ratio in sorted({float(r["ratio"]) for r in rows}):
        inner = [r["score"] for r in rows if r["ratio"] == ratio and r["level"] >= first]
        outer = [r["score"] for r in rows if r["ratio"] == ratio and r["level"] < first]
        mean_outer = sum(outer) / len(outer) if outer else math.nan
        ratios[ratio] = (sum(inner) / len(inner)) / mean_outer if inner and outer and mean_outer > 0 else math.nan
    return ratios


def plot_sensitivity(rows: Sequence[Mapping[str, Any]], depth: int, inner_levels: int, path: Path,
                     ylabel: str) -> Path:
    """Score against layer index, one line per ratio; circles for encoder layers, squares for decoder layers, the
    innermost ``inner_levels`` levels shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from kd_core.plots import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    layers = {r["index"]: r["layer"] for r in rows}
    inner = [r["index"] for r in rows if r["level"] >= depth - inner_levels]
    if inner:
        ax.axvspan(min(inner) - 0.5, max(inner) + 0.5, color="0.9", label=f"innermost {inner_levels} levels")
    for ratio in sorted({r["ratio"] for r in rows}):
        own = [r for r in rows if r["ratio"] == ratio]
        line = ax.plot([r["index"] for r in own], [r["score"] for r in own], "-", label=f"r = {ratio:.0%}")[0]
        for side, marker in MARKERS.items():
            mine = [r for r in own if r["side"] == side]
            ax.plot([r["index"] for r in mine], [r["score"] for r in mine], marker, color=line.get_color())
    for side, marker in MARKERS.items():  # one legend entry per side, whatever the ratio
        ax.plot([], [], marker, color="0.3", label=f"{side} layer")
    ax.set_xticks(sorted(layers), [layers[i] for i in sorted(layers)], rotation=45, ha="right", fontsize="small")
    ax.set_xlabel("layer (data path: encoders in, decoders out)")
    ax.set_ylabel(ylabel)
    ax.set_title("Per-layer sensitivity of the teacher (one layer pruned, no fine-tuning)")
    ax.legend(fontsize="x-small")
    return save_figure(fig, path)


def sensitivity_section(rows: Sequence[Mapping[str, Any]], structure: UNetStructure, inner_levels: int, score: str,
                        run: Path) -> tuple[str, dict[str, Any]]:
    """The markdown of the sensitivity section (plot, ratio line, table) and what ``results.json`` keeps of it."""
    placed = placed_rows(rows, structure)
    ratios = sensitivity_ratios(placed, structure.depth, inner_levels)
    what = ("mean |output − teacher output| on val inputs" if score == "l1"
            else "Fréchet distance to the teacher's images on val inputs")
    plot = plot_sensitivity(placed, structure.depth, inner_levels, Path(run) / "plots" / "sensitivity.png", what)
    finite = [v for v in ratios.values() if math.isfinite(v)]
    verdict = ("n/a" if not finite else "met" if max(finite) <= CRITERION else "not met")
    ratio_text = ", ".join(f"{v:.3f} at r = {r:.0%} (outer {1 / v:.1f}× more sensitive)" if v > 0 else
                           f"{v:.3f} at r = {r:.0%}" for r, v in ratios.items())
    table = [{"index": r["index"], "layer": r["layer"], "level": r["level"], "side": r["side"],
              "ratio": f"{r['ratio']:.0%}", "score": f"{r['score']:.4g}", "params kept": f"{r['params_kept']:.1%}"}
             for r in placed]
    text = (f"Each layer alone loses the given ratio of its filters (L1, structured, no fine-tuning); score: {what} "
            "(higher: more sensitive). Layer index follows the data: encoders from the outermost level to the "
            "bottleneck, then decoders back out (the paper's U-shape puts the insensitive layers in the middle). "
            f"The layer producing the image is never pruned.\n\n![sensitivity]({plot.relative_to(run).as_posix()})\n\n"
            f"**inner/outer sensitivity ratio**: {ratio_text}: the mean score of the innermost {inner_levels} "
            f"levels' layers over that of the other levels' layers. Criterion (inner ≥ 3× less sensitive, ratio ≤ "
            f"{CRITERION:.3f}): **{verdict}**.\n\n" + markdown_table(table))
    kept = {"score": score, "inner_levels": inner_levels, "rows": placed,
            "inner_outer_ratio": {f"{r:g}": v for r, v in ratios.items()}, "criterion": verdict}
    return text, kept


def pruning_rows(results: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]],
                 reference: str | None) -> list[dict[str, str]]:
    """One row per arm: parameters and MACs of the trained student, × fewer than the teacher, the step's method
    and settings, and the parameter difference from the ``reference`` arm (the one global pruning matched)."""
    teacher = results.get("teacher", {}).get("cost", {})
    base = summaries[reference]["params"] if reference in summaries else None
    rows = []
    for name, arm in results["arms"].items():
        cost, summary = arm["cost"], summaries.get(name, {})
        settings = summary.get("settings", {})
        shown = {k: settings[k] for k in ("ratio", "levels", "depth_after", "target_params") if k in settings}
        if settings.get("layer_ratios"):  # inner pruning: its layers' ratio, not the (zero) ratio of the rest
            shown["ratio"] = sorted(set(settings["layer_ratios"].values()))
        if isinstance(shown.get("ratio"), float):
            shown["ratio"] = round(shown["ratio"], 4)
        row = {"arm": name, "params": f"{int(cost['params']):,}",
               "× fewer params": f"{teacher['params'] / cost['params']:.1f}" if teacher else "n/a",
               "MACs": f"{int(cost['macs']):,}" if math.isfinite(cost.get("macs", math.nan)) else "n/a",
               "× fewer MACs": f"{teacher['macs'] / cost['macs']:.1f}" if teacher and cost.get("macs") else "n/a"}
        if base:
            row[f"vs {reference} params"] = f"{(cost['params'] - base) / base:+.1%}"
        rows.append({**row, "pruning": f"{summary.get('method', '?')} {shown}"})
    return rows
