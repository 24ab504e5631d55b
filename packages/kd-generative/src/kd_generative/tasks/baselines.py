"""Trivial baselines of an image-to-image task, and the gate a study's teacher must pass before its students are
judged: a regime where a trained generator barely beats a constant image or a copy of its input cannot show what
distillation adds (a student that "matches the teacher" there has learnt nothing worth distilling).

- ``mean colour``: every test target predicted as the train targets' mean colour (one RGB value);
- ``input copy``: the input itself, where it is an image of the target's scene (grey, the mask set's superpixel
  colours, a user's folder of the same shape; an edge map is not, and gets no copy baseline).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import torch
from kd_core.report import markdown_table

from kd_generative.metrics import psnr, ssim

__all__ = ["GATE_MARGIN_DB", "baseline_scores", "gate_markdown", "gate_text", "students_below"]

#: How far (dB of PSNR to the target) the teacher must lead the best trivial baseline to pass the gate.
GATE_MARGIN_DB = 1.0

_COPYABLE = ("grey", "mask", "folder")


def _stack(split: Any, field: str) -> torch.Tensor:
    tensor = getattr(split, f"{field}s", None)
    if isinstance(tensor, torch.Tensor):
        return tensor.float()
    return torch.stack([split[i][field] for i in range(len(split))]).float()


def _as_rgb(inputs: torch.Tensor) -> torch.Tensor | None:
    if inputs.shape[1] == 1:
        return inputs.expand(-1, 3, -1, -1)
    return inputs if inputs.shape[1] == 3 else None


def baseline_scores(train: Any, test: Any, source: str) -> dict[str, dict[str, float]]:
    """PSNR (dB) and SSIM to the test targets of each trivial baseline (see the module doc). ``train``/``test``:
    splits whose items are ``{"input", "target"}`` in [-1, 1]; ``source``: the task's data source (``grey``,
    ``edges``, ``mask`` or ``folder:...``), which decides whether the input is a copy baseline."""
    targets = _stack(test, "target")
    mean = _stack(train, "target").mean(dim=(0, 2, 3), keepdim=True)
    guesses = {"mean colour": mean.expand_as(targets)}
    copy = _as_rgb(_stack(test, "input")) if source.partition(":")[0] in _COPYABLE else None
    if copy is not None and copy.shape == targets.shape:
        guesses["input copy"] = copy
    return {name: {"psnr": float(psnr(guess.clamp(-1, 1), targets)), "ssim": float(ssim(guess.clamp(-1, 1), targets))}
            for name, guess in guesses.items()}


def gate_text(baselines: Mapping[str, Mapping[str, float]], teacher_psnr: float | None,
              margin: float = GATE_MARGIN_DB) -> str:
    """A sentence saying whether the teacher leads the best trivial baseline by ``margin`` dB of PSNR."""
    if not baselines or teacher_psnr is None or not math.isfinite(teacher_psnr):
        return "Gate: not judged (no teacher score or no baseline)."
    best, scores = max(baselines.items(), key=lambda item: item[1]["psnr"])
    lead = teacher_psnr - scores["psnr"]
    if lead >= margin:
        return (f"Gate passed: the teacher ({teacher_psnr:.2f} dB) leads the best trivial baseline ({best}, "
                f"{scores['psnr']:.2f} dB) by {lead:.2f} dB (≥ {margin:g} dB), so the task has something to distil.")
    return (f"**Gate failed**: the teacher ({teacher_psnr:.2f} dB) leads the best trivial baseline ({best}, "
            f"{scores['psnr']:.2f} dB) by {lead:.2f} dB (< {margin:g} dB). In this regime a generator learns little "
            "beyond the trivial guess, so the arms' differences say nothing about distillation: use larger images, "
            "more data or epochs, or another source.")


def students_below(baselines: Mapping[str, Mapping[str, float]], students: Mapping[str, float]) -> str:
    """A sentence naming the students (arm -> mean PSNR, dB) that do not beat the best trivial baseline, or ""."""
    if not baselines:
        return ""
    best, scores = max(baselines.items(), key=lambda item: item[1]["psnr"])
    below = [f"**{arm}** ({value:.2f} dB)" for arm, value in students.items() if value <= scores["psnr"]]
    if not below:
        return ""
    return (f"**Students at or below the best trivial baseline** ({best}, {scores['psnr']:.2f} dB): "
            f"{', '.join(below)}. At this size these students learn no more than the trivial guess, so their "
            "differences do not test distillation: give the students more capacity or training, or change the "
            "task.")


def gate_markdown(baselines: Mapping[str, Mapping[str, float]], results: Mapping[str, Any]) -> str:
    """A report's gate section: ``gate_text`` for the teacher of a study's ``results``, ``students_below`` for its
    arms (mean PSNR over seeds), and a table of the baselines', the teacher's and the students' PSNR / SSIM."""
    test = results.get("teacher", {}).get("test", {})
    teacher = test.get("psnr")
    rows = [{"baseline": name, "psnr": f"{s['psnr']:.2f}", "ssim": f"{s['ssim']:.3f}"} for name, s in baselines.items()]
    if teacher is not None:
        rows.append({"baseline": "teacher (for reference)", "psnr": f"{teacher:.2f}",
                     "ssim": f"{test.get('ssim', math.nan):.3f}"})
    students = {name: statistics.fmean(s["psnr"] for s in arm["seeds"].values())
                for name, arm in results.get("arms", {}).items() if arm.get("seeds")}
    rows += [{"baseline": f"{name} (student, mean)", "psnr": f"{value:.2f}", "ssim": ""}
             for name, value in students.items()]
    warning = students_below(baselines, students)
    return gate_text(baselines, teacher) + (f"\n\n{warning}" if warning else "") + "\n\n" + markdown_table(rows)
