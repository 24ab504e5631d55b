"""Markdown reports: tables of results, embedded plots, and the command that reproduces a run."""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd_core.runs import RunDir


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (dicts), in ``columns`` order."""
    if not rows:
        return "_no rows_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def command_line() -> str:
    """The command that started this process, quoted for a shell."""
    program = Path(sys.argv[0]).name if sys.argv else "python"
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def write_report(run: RunDir, title: str, sections: Sequence[tuple[str, str]],
                 plots: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write ``report.md``: a title, ``(heading, markdown)`` sections and plots linked relative to the run."""
    parts = [f"# {title}\n"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.rstrip()}\n")
    if plots:
        parts.append("## Plots\n")
        for caption, path in plots:
            rel = Path(path).resolve().relative_to(run.path.resolve())
            parts.append(f"### {caption}\n\n![{caption}]({rel.as_posix()})\n")
    return run.write_text("report.md", "\n".join(parts))


# -- the report of one ``Distiller.fit`` ----------------------------------------------------------------

PERCENT_METRICS = ("accuracy", "ece")
"""Metrics that a fit's report shows ×100 with a % unit (those of the default classification evaluator)."""


@dataclass(frozen=True)
class FitPhase:
    """One phase as a fit's report shows it: its name, length and objective in words."""

    name: str
    epochs: int
    objective: str = ""
    temperature: str = ""


def _number(value: float) -> str:
    return f"{value:g}"


def _scheduled(value: Any) -> str:
    """A number, or a schedule as ``start→end`` over the phase (its values at progress 0 and 1)."""
    if callable(value):
        try:
            start, end = float(value(0.0)), float(value(1.0))
        except (TypeError, ValueError):
            return "scheduled"
        return _number(start) if start == end else f"{_number(start)}→{_number(end)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(float(value))
    return str(value)


def describe_objective(objective: Any) -> tuple[str, str]:
    """``objective``'s terms in words (``"kd (w=0.9, T=4) + ce (w=0.1)"``) and its temperature(s) (``"4"``,
    ``"4→1"``, or ``""`` without one), from each term's ``name``, ``weight`` and ``options``."""
    parts, temperatures = [], []
    for term in getattr(objective, "terms", []):
        weight = getattr(term, "weight", 1.0)
        detail = [f"w={_scheduled(getattr(weight, 'value', weight))}"]
        options = getattr(term, "options", {}) or {}
        if "temperature" in options:
            temperature = _scheduled(options["temperature"])
            detail.append(f"T={temperature}")
            temperatures.append(temperature)
        parts.append(f"{term.name} ({', '.join(detail)})")
    return " + ".join(parts), ", ".join(dict.fromkeys(temperatures))


def _metric_label(key: str) -> str:
    name = key.split("/", 1)[-1]
    return f"{name} (%)" if name in PERCENT_METRICS else name


def _column(key: str) -> str:
    """A validation metric's table column: ``accuracy (%)`` for the student, ``val_teacher accuracy (%)`` else."""
    prefix = key.split("/", 1)[0]
    return _metric_label(key) if prefix == "val" else f"{prefix} {_metric_label(key)}"


def _metric_value(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    if not math.isfinite(value):
        return str(value)
    if key.split("/", 1)[-1] in PERCENT_METRICS:
        return f"{100 * value:.2f}"
    return f"{value:.4f}"


def _phase_rows(history: Sequence[Mapping[str, Any]], index: int) -> list[Mapping[str, Any]]:
    return [row for row in history if int(row.get("phase", -1)) == index]


def best_epoch(rows: Sequence[Mapping[str, Any]], monitor: str, mode: str = "max") -> Mapping[str, Any] | None:
    """The first row holding the best finite ``monitor`` (highest with ``mode="max"``), as ``Distiller``
    picks its best checkpoint; None when no row holds a finite one."""
    best: Mapping[str, Any] | None = None
    for row in rows:
        value = row.get(monitor)
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if best is None or (value > best[monitor] if mode == "max" else value < best[monitor]):
            best = row
    return best


def fit_curves(phases: Sequence[FitPhase], history: Sequence[Mapping[str, Any]],
               records: Sequence[Mapping[str, Any]]
               ) -> tuple[dict[str, dict[str, list[tuple[float, float]]]], list[tuple[float, str]]]:
    """The panels and marks of a fit's training plot, on one epoch axis running through every phase:
    a panel per validation metric (a line per evaluated model: the student, a co-trained teacher, ...),
    then a panel per logged loss term, each the mean over its epoch's steps; a mark where each phase
    starts (with its temperature) when there are several."""
    offsets = [0]
    for phase in phases:
        offsets.append(offsets[-1] + phase.epochs)
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for row in history:
        phase = int(row.get("phase", 0))
        x = offsets[min(phase, len(phases))] + float(row.get("epoch", 0))
        for key, value in row.items():
            if not key.startswith("val") or "/" not in key or not isinstance(value, int | float):
                continue
            prefix, name = key.split("/", 1)
            model = "student" if prefix == "val" else prefix.removeprefix("val_")
            scale = 100.0 if name in PERCENT_METRICS else 1.0
            panels.setdefault(f"validation {_metric_label(key)}", {}).setdefault(model, []).append(
                (x, scale * float(value)))
    sums: dict[str, dict[tuple[int, int], list[float]]] = {}
    for record in records:
        epoch, phase = record.get("epoch"), record.get("phase")
        if not isinstance(epoch, int | float) or not isinstance(phase, int | float):
            continue
        for key, value in record.items():
            if "loss/" in key and isinstance(value, int | float) and not isinstance(value, bool):
                # a step of 0-based epoch e logs epoch = e + (batch + 1) / batches, in (e, e + 1]
                slot = sums.setdefault(key, {}).setdefault((int(phase), math.ceil(epoch)), [0.0, 0])
                slot[0] += float(value)
                slot[1] += 1
    for key, slots in sums.items():
        points = [(offsets[min(phase, len(phases))] + epoch, total / count)
                  for (phase, epoch), (total, count) in sorted(slots.items())]
        panels[f"train {key} (epoch mean)"] = {key: points}
    marks: list[tuple[float, str]] = []
    if len(phases) > 1:
        marks = [(float(offsets[i]), phase.name + (f" T={phase.temperature}" if phase.temperature else ""))
                 for i, phase in enumerate(phases)]
    return panels, marks


def write_fit_report(run: RunDir, phases: Sequence[FitPhase], history: Sequence[Mapping[str, Any]],
                     records: Sequence[Mapping[str, Any]], monitor: str = "val/accuracy",
                     mode: str = "max") -> Path:
    """Write a fit's ``report.md`` and ``plots/training.png``: the phases, the best (by ``monitor``) and the
    final validation metrics of every phase, where the checkpoints are, and the training curves
    (``fit_curves``). ``history`` holds the fit's per-epoch rows, ``records`` the lines of metrics.jsonl."""
    from kd_core.plots import plot_epoch_curves  # matplotlib only when a report is written

    sections = [("Phases", markdown_table(
        [{"phase": p.name, "epochs": p.epochs, "objective": p.objective or "–"} for p in phases]))]
    metrics = list(dict.fromkeys(k for row in history for k in row if k.startswith("val") and "/" in k))
    if metrics:
        rows = []
        for index, phase in enumerate(phases):
            in_phase = _phase_rows(history, index)
            if not in_phase:
                continue
            best = best_epoch(in_phase, monitor, mode)
            picked = ([(f"best {monitor}", best)] if best is not None else []) + [("final", in_phase[-1])]
            for which, row in picked:
                rows.append({"phase": phase.name, "epoch": int(row.get("epoch", 0)), "row": which,
                             **{_column(k): _metric_value(k, row.get(k)) for k in metrics}})
        columns = ["phase", "row", "epoch", *map(_column, metrics)]
        sections.append(("Validation", markdown_table(rows, columns)))
    else:
        sections.append(("Validation", "No validation set was given: no metrics per epoch and no best "
                                       "checkpoints; `checkpoints/final.safetensors` holds the last weights.\n"))
    sections.append(("Checkpoints", _checkpoint_lines(run, phases, history, monitor, mode)))
    panels, marks = fit_curves(phases, history, records)
    plots: list[tuple[str, Path]] = []
    if panels:
        plots.append(("Validation metrics and loss terms per epoch",
                      plot_epoch_curves(panels, run.plots / "training.png", marks=marks)))
    return write_report(run, f"Training run {run.path.name}", sections, plots)


def _checkpoint_lines(run: RunDir, phases: Sequence[FitPhase], history: Sequence[Mapping[str, Any]],
                      monitor: str, mode: str) -> str:
    """The checkpoints the run holds, each with what it is, paths relative to the run."""
    lines = []
    for index, phase in enumerate(phases):
        path = run.checkpoints / f"best-{phase.name}.safetensors"
        best = best_epoch(_phase_rows(history, index), monitor, mode)
        if path.is_file() and best is not None:
            unit = " %" if monitor.split("/")[-1] in PERCENT_METRICS else ""
            lines.append(f"- `checkpoints/{path.name}`: the student at the best {monitor} of phase {phase.name} "
                         f"({_metric_value(monitor, best[monitor])}{unit}, epoch {int(best.get('epoch', 0))})")
    if (run.checkpoints / "best.safetensors").is_file():
        lines.append(f"- `checkpoints/best.safetensors`: a copy of the last phase's best (phase {phases[-1].name})")
    if (run.checkpoints / "final.safetensors").is_file():
        lines.append("- `checkpoints/final.safetensors`: the student after the last epoch")
    if (run.checkpoints / "last.safetensors").is_file():
        lines.append("- `checkpoints/last.safetensors`: the whole training state (optimizers, RNG, position), "
                     "what `fit(..., resume=True)` continues from")
    return "\n".join(lines) + "\n" if lines else "_no checkpoints_\n"
