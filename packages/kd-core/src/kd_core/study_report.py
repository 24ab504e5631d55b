"""A study's ``report.md``: the teacher's quality, whether plain KD beats scratch, every paired comparison
with its 95 % interval and verdict, tables per arm and per seed, and plots (validation curves per arm with
phase changes marked, the headline metric with interval bars, reliability diagrams)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kd_core.gates import gate_sentence, kd_check, kd_gate_sentence, plain_kd, teacher_checks
from kd_core.metrics import expected_calibration_error, mean_std
from kd_core.plots import plot_reliability_diagram, save_figure
from kd_core.report import command_line, markdown_table, write_report
from kd_core.runs import RunDir
from kd_core.stats import PairedComparison, t_half_width

if TYPE_CHECKING:
    from kd_core.study import Study

__all__ = ["comparison_sentence", "write_study_report"]


def _unit(metric: str, percent: Sequence[str]) -> str:
    return "points" if metric in percent else ""


def comparison_sentence(c: PairedComparison, unit: str = "points") -> str:
    """One sentence for a comparison: who wins, by how much, the interval, the verdict.

    "kd beats scratch by 1.20 points (95 % CI +0.40 to +2.00, 3 paired seeds): **held**." A loss reads
    "loses to ... by"; a single seed says n = 1 and gives no interval.
    """
    better = c.mean > 0 if c.higher_is_better else c.mean < 0
    verb = "ties with" if c.mean == 0 else "beats" if better else "loses to"
    size = "" if c.mean == 0 else f" by {abs(c.mean):.2f}{' ' + unit if unit else ''}"
    if c.low is None or c.high is None:
        spread = " on a single seed (n = 1, no interval)"
    else:
        spread = f" (95 % CI of the difference {c.low:+.2f} to {c.high:+.2f}, {c.n} paired seeds)"
    return f"**{c.a}** {verb} **{c.b}**{size} in {c.metric}{spread}: **{c.verdict}**."


def _scaled(metric: str, value: float, percent: Sequence[str]) -> float:
    return 100.0 * value if metric in percent else value


def _cell(metric: str, values: list[float], percent: Sequence[str]) -> str:
    scaled = [_scaled(metric, v, percent) for v in values if math.isfinite(v)]
    if not scaled:
        return "n/a"
    digits = 2 if metric in percent else 3
    if len(scaled) == 1:
        return f"{scaled[0]:.{digits}f} (n = 1)"
    mean, std = mean_std(scaled)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _count(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{int(value):,}"


def _arm_rows(results: Mapping[str, Any], metrics: list[str], percent: Sequence[str]) -> list[dict[str, str]]:
    def label(metric: str) -> str:
        return f"{metric} %" if metric in percent else metric

    rows = []
    if "teacher" in results:
        t = results["teacher"]
        rows.append({"model": "teacher", "role": "teacher",
                     **{label(m): _cell(m, [t["test"].get(m, math.nan)], percent).replace(" (n = 1)", "")
                        for m in metrics},
                     "params": _count(t["cost"]["params"]), "MACs": _count(t["cost"]["macs"]),
                     "CPU p50 ms": f"{t['cost'].get('latency_ms_p50', math.nan):.3f}"})
    for name, arm in results["arms"].items():
        values = list(arm["seeds"].values())
        rows.append({"model": name, "role": arm["role"],
                     **{label(m): _cell(m, [v.get(m, math.nan) for v in values], percent) for m in metrics},
                     "params": _count(arm["cost"]["params"]), "MACs": _count(arm["cost"]["macs"]),
                     "CPU p50 ms": f"{arm['cost'].get('latency_ms_p50', math.nan):.3f}"})
    return rows


def _epoch_curves(run: Path, arms: Sequence[str], seed: int, metric: str) -> dict[str, list[tuple[int, float, str]]]:
    """Per arm (first seed): (epoch number across phases, validation metric, phase name) per epoch."""
    curves = {}
    for arm in arms:
        path = run / f"{arm}-seed{seed}" / "metrics.jsonl"
        if not path.is_file():
            continue
        points = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if f"val/{metric}" in record and "phase_name" in record:
                points.append((len(points) + 1, float(record[f"val/{metric}"]), str(record["phase_name"])))
        if points:
            curves[arm] = points
    return curves


def _plot_curves(curves: Mapping[str, list[tuple[int, float, str]]], path: Path, metric: str,
                 percent: Sequence[str]) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for arm, points in curves.items():
        line = ax.plot([p[0] for p in points], [_scaled(metric, p[1], percent) for p in points], marker=".",
                       label=arm)[0]
        for (_, _, before), (epoch, _, after) in pairwise(points):
            if before != after:  # a phase change: a dotted line at the first epoch of the new phase
                ax.axvline(epoch - 0.5, color=line.get_color(), linestyle=":", linewidth=1)
                ax.annotate(after, (epoch - 0.5, ax.get_ylim()[0]), fontsize="x-small", rotation=90,
                            color=line.get_color(), va="bottom")
    ax.set_xlabel("epoch (all phases)")
    ax.set_ylabel(f"validation {metric}{' (%)' if metric in percent else ''}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def _plot_headline(results: Mapping[str, Any], path: Path, metric: str, percent: Sequence[str]) -> Path:
    """Mean of the headline metric per arm with its 95 % t-interval (no bar for one seed), the teacher as a
    dashed line; the axis spans the values, so that the differences the report is about show."""
    import matplotlib.pyplot as plt

    names, means, errors = [], [], []
    for name, arm in results["arms"].items():
        values = [_scaled(metric, v[metric], percent) for v in arm["seeds"].values() if math.isfinite(v[metric])]
        if not values:
            continue
        names.append(name)
        means.append(sum(values) / len(values))
        errors.append(t_half_width(values) or 0.0)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(names) + 2.0), 4.2))
    ax.errorbar(range(len(names)), means, yerr=errors, fmt="o", capsize=6, color="tab:blue")
    for i, (m, e) in enumerate(zip(means, errors, strict=True)):
        ax.annotate(f"{m:.2f}", (i, m + e), textcoords="offset points", xytext=(0, 4), ha="center",
                    fontsize="small")
    low, high = min(m - e for m, e in zip(means, errors, strict=True)), max(m + e for m, e in
                                                                             zip(means, errors, strict=True))
    if "teacher" in results and metric in results["teacher"]["test"]:
        teacher = _scaled(metric, results["teacher"]["test"][metric], percent)
        ax.axhline(teacher, color="gray", linestyle="--", linewidth=1, label=f"teacher {teacher:.2f}")
        low, high = min(low, teacher), max(high, teacher)
        ax.legend(fontsize="small")
    pad = max((high - low) * 0.15, 1e-3)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 4 else 0)
    ax.set_ylabel(f"test {metric}{' (%)' if metric in percent else ''}: mean, 95 % t-interval")
    ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_study_report(study: Study, run: RunDir, results: dict[str, Any],
                       comparisons: Sequence[PairedComparison],
                       calibration: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Write the study's ``report.md`` and its plots into ``run``."""
    task, percent = study.task, study.task.percent
    unit = _unit(task.headline, percent)
    lines = []
    if "teacher" in results:
        t = results["teacher"]
        shown = task.headline if task.headline in t["test"] else (task.gate_metric or task.headline)
        sign = " %" if shown in percent else ""
        lines.append(f"**Teacher**: test {shown} {_scaled(shown, t['test'].get(shown, math.nan), percent):.2f}{sign} "
                     f"(val {_scaled(shown, t['val'].get(shown, math.nan), percent):.2f}{sign}); {t['source']}.")
    roles = {name: arm["role"] for name, arm in results["arms"].items()}
    if "teacher" in results:
        metric = task.gate_metric or task.headline
        scratch = [v[metric] for name, arm in results["arms"].items() if arm["role"] == "scratch"
                   for v in arm["seeds"].values() if metric in v]
        checks = teacher_checks(results["teacher"]["test"].get(metric, math.nan), scratch,
                                task.higher_is_better if metric == task.headline else True,
                                calibration.get("teacher"), metric=metric)
        results["teacher"]["gate"] = [asdict(c) for c in checks]
        lines.append(f"**Teacher gate**: {gate_sentence(checks)}")
    plain = plain_kd(comparisons, roles)
    for c in plain:
        lines.append("**Plain KD against scratch**: " + comparison_sentence(c, unit))
    kd_gate = kd_check(comparisons, roles)
    if kd_gate is not None:
        results["kd_gate"] = asdict(kd_gate)
        lines.append(f"**KD gate**: {kd_gate_sentence(kd_gate)}")
    lines += [comparison_sentence(c, unit) for c in comparisons if c not in plain]
    lines.append(f"Verdicts: *held* when the 95 % t-interval of the paired per-seed difference lies on the claimed "
                 f"side of zero, *not held* when it lies on the other side, *inconclusive* when it spans zero or "
                 f"there is one seed. Seeds: {', '.join(map(str, study.seeds))}; the same seed gives every arm "
                 f"the same student initialisation and data order.")
    sizes = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in results["task"]["sizes"].items())
    lines.append(f"Task: {task.description or task.name} ({sizes}). Metrics on the test split; each student is "
                 "its last epoch.")
    if study.notes:
        lines.append(study.notes)
    metrics = [task.headline] + [m for m in ("ece", "nll") if m != task.headline and
                                 any(m in v for arm in results["arms"].values() for v in arm["seeds"].values())]
    comparison_rows = [{"a": c.a, "b": c.b, "metric": c.metric, "mean a − b": f"{c.mean:+.2f}",
                        "95 % CI": "n/a (n = 1)" if c.low is None else f"{c.low:+.2f} to {c.high:+.2f}",
                        "seeds": c.n, "verdict": c.verdict} for c in comparisons]
    seed_rows = [{"seed": s, **{name: f"{_scaled(task.headline, arm['seeds'][str(s)][task.headline], percent):.2f}"
                                for name, arm in results["arms"].items() if str(s) in arm["seeds"]}}
                 for s in study.seeds]
    plots_dir = run.plots
    plots = []
    curves = _epoch_curves(run.path, list(results["arms"]), study.seeds[0], task.headline)
    if curves:
        plots.append((f"Validation {task.headline} per epoch (seed {study.seeds[0]}; dotted: phase changes)",
                      _plot_curves(curves, plots_dir / "val_curves.png", task.headline, percent)))
    plots.append((f"Test {task.headline} per arm", _plot_headline(results, plots_dir / "headline.png",
                                                                 task.headline, percent)))
    if calibration:
        diagrams = {name: expected_calibration_error(*outputs) for name, outputs in calibration.items()}
        plots.append((f"Reliability diagrams (test split, seed {study.seeds[0]})",
                      plot_reliability_diagram(diagrams, plots_dir / "reliability.png")))
    extra = study.sections(results, run.path) if study.sections is not None else []
    return write_report(run, study.title, [
        ("Summary", "\n\n".join(lines) + "\n"),
        ("Results (test split)", markdown_table(_arm_rows(results, metrics, percent))),
        ("Paired comparisons", markdown_table(comparison_rows) if comparison_rows else "_none_\n"),
        (f"Per seed (test {task.headline}{' %' if task.headline in percent else ''})", markdown_table(seed_rows)),
        *extra,
        ("Reproduce", f"```\n{command_line()}\n```\nDevice: {study.backend.describe().get('device', '?')}. "
                      "Environment in `env.json`, resolved configuration in `config.yaml`, every number in "
                      "`results.json`.\n"),
    ], plots=plots)
