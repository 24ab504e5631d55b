"""Report sections of an image-to-image study: the gate (the teacher against trivial baselines), every image
metric per arm (to the target and to the teacher), a grid of test images (input, teacher, each arm's student,
target) and where the teacher came from."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from kd_core.checkpoint import load_weights
from kd_core.metrics import mean_std
from kd_core.report import markdown_table
from kd_core.task import Task
from torch import nn

from kd_generative.plots import image_grid
from kd_generative.tasks.baselines import baseline_scores, gate_markdown
from kd_generative.tasks.evaluate import generated_images

__all__ = ["QUALITY", "gate_section", "image_sections", "quality_rows", "sample_grid", "seed_cell"]

#: The metrics of the quality table: to the target, then to the teacher's images.
QUALITY = ("psnr", "ssim", "perceptual", "frechet", "psnr_teacher", "ssim_teacher", "perceptual_teacher",
           "frechet_teacher")


def seed_cell(values: Sequence[float]) -> str:
    """A table cell for one metric over seeds: the value for one seed, ``mean ± std`` for several, ``n/a`` when
    none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.4g}"
    mean, std = mean_std(finite)
    return f"{mean:.4g} ± {std:.2g}"


def quality_rows(results: Mapping[str, Any], metrics: Sequence[str] = QUALITY) -> list[dict[str, str]]:
    """One row for the teacher (to the target) and one per arm (mean ± std over seeds) of every metric of
    ``metrics`` (default ``QUALITY``)."""
    rows = []
    if "teacher" in results:
        test = results["teacher"]["test"]
        rows.append({"model": "teacher", **{m: seed_cell([test.get(m, math.nan)]) for m in metrics}})
    for name, arm in results["arms"].items():
        seeds = list(arm["seeds"].values())
        rows.append({"model": name, **{m: seed_cell([s.get(m, math.nan) for s in seeds]) for m in metrics}})
    return rows


def sample_grid(task: Task, arms: Sequence[str], seed: int, run: Path, rows: int,
                students: Mapping[str, Callable[[], nn.Module]] | None = None) -> Path:
    """``plots/samples.png`` in ``run``: the first ``rows`` test pairs, the teacher's images and each arm's final
    student's (seed ``seed``, weights read from its run), every model in eval mode. ``students``: arm -> a builder
    of that arm's architecture, for arms whose students are not ``task.student(seed)`` (pruned copies)."""
    batch = task.example_batch(rows)
    columns: dict[str, torch.Tensor] = {"input": batch["input"]}
    teacher = task.teacher()
    device = next(teacher.parameters()).device
    on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    columns["teacher"] = generated_images(teacher, [on_device], task.forward)[0]
    for arm in arms:
        weights = Path(run) / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors"
        if weights.is_file():
            build = students[arm] if students and arm in students else (lambda: task.student(seed))
            columns[arm] = generated_images(load_weights(build(), weights), [batch], task.forward)[0]
    columns["target"] = batch["target"]
    return image_grid(columns, Path(run) / "plots" / "samples.png")


def gate_section(task: Task, results: Mapping[str, Any]) -> str:
    """The trivial baselines' PSNR/SSIM on the test split and whether the teacher leads them (``tasks.baselines``)."""
    return gate_markdown(baseline_scores(task.data.train, task.data.test, str(task.extras.get("source", ""))),
                         results)


def image_sections(task: Task, arms: Sequence[str], seeds: Sequence[int], results: Mapping[str, Any], run: Path,
                   rows: int = 6, students: Mapping[str, Callable[[], nn.Module]] | None = None,
                   ) -> list[tuple[str, str]]:
    """The study report's extra sections: the gate, image quality, samples and the teacher's provenance
    (``students``: see ``sample_grid``)."""
    grid = sample_grid(task, arms, seeds[0], Path(run), rows, students)
    note = task.extras.get("teacher_note") or "see the summary"
    return [
        ("Gate: the teacher against trivial baselines", gate_section(task, results)),
        ("Image quality (test split)",
         "PSNR (dB) and SSIM: higher is better; perceptual and Fréchet distances: lower is better. Columns "
         "ending in `_teacher` compare with the teacher's images instead of the targets. Mean ± std over seeds.\n\n"
         + markdown_table(quality_rows(results))),
        ("Samples", f"Test inputs, the teacher's images, each arm's student (seed {seeds[0]}) and the targets.\n\n"
                    f"![samples]({grid.relative_to(run).as_posix()})\n"),
        ("Teacher", f"The teacher was {note}.\n"),
    ]
