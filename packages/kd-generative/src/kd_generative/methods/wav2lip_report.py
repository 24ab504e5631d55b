"""Report sections of the ``wav2lip-compact`` study: size and cost of teacher and student, image quality and lip
sync per arm (with the real frames' lip sync as the reference), paired lip-sync comparisons, the spread across
seeds, a frame strip of a test clip, and where the teacher and the experts came from.

Kim et al., "A Unified Compression Framework for Efficient Speech-Driven Talking-Face Generation",
arXiv:2304.00471 (the compact Wav2Lip and its KD without a discriminator).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from kd_core.checkpoint import load_weights
from kd_core.metrics import count_macs, count_parameters, mean_std
from kd_core.report import markdown_table
from kd_core.study import compare_arms
from kd_core.task import Task

from kd_generative.report import quality_rows as image_quality_rows
from kd_generative.report import seed_cell
from kd_generative.talking.generator import build_generator
from kd_generative.talking.strip import frame_strip
from kd_generative.tasks.baselines import GATE_MARGIN_DB
from kd_generative.tasks.talking_eval import (
    clip_frames,
    clip_sync,
    lower_half_quality,
    mouth_boxes,
    mouth_psnr,
    window_sync,
)

__all__ = ["MOUTH_METRICS", "QUALITY", "frame_cost", "gate_check", "gate_section", "gate_verdict", "mouth_comparisons",
           "quality_rows", "reference_copy_scores", "strip_section", "wav2lip_sections"]

#: The quality table's columns, then the metrics of what the audio drives (the mouth box and lip sync) and their
#: direction (True: higher is better), compared pair by pair besides the headline PSNR.
QUALITY = ("psnr", "ssim", "psnr_mouth", "psnr_teacher", "l1_teacher", "sync", "lse_d", "lse_c", "offset")
MOUTH_METRICS = {"psnr_mouth": True, "lse_c": True, "lse_d": False, "sync": True}
COUNTER = ("MACs from `kd_core.metrics.count_macs` (torch's `FlopCounterMode`, FLOPs // 2: convolutions, "
           "transposed convolutions and matmuls; norms and activations are not counted), one frame")


def frame_cost(teacher: torch.nn.Module, student: torch.nn.Module, size: int) -> dict[str, float]:
    """Parameters and MACs of one frame of ``teacher`` and ``student`` and their ratios."""
    faces, mels = torch.zeros(1, 6, size, size), torch.zeros(1, 1, 80, 16)
    cost = {"teacher_params": count_parameters(teacher), "student_params": count_parameters(student),
            "teacher_macs": count_macs(teacher, faces, mels), "student_macs": count_macs(student, faces, mels)}
    cost["params_ratio"] = cost["teacher_params"] / cost["student_params"]
    cost["macs_ratio"] = cost["teacher_macs"] / cost["student_macs"]
    return cost


def _cost_table(costs: Mapping[str, Mapping[str, float]]) -> str:
    rows = [{"setting": name, "teacher params": f"{c['teacher_params'] / 1e6:.3f} M",
             "student params": f"{c['student_params'] / 1e6:.3f} M", "params ratio": f"{c['params_ratio']:.1f}×",
             "teacher MACs": f"{c['teacher_macs'] / 1e6:.1f} M", "student MACs": f"{c['student_macs'] / 1e6:.2f} M",
             "MACs ratio": f"{c['macs_ratio']:.1f}×"} for name, c in costs.items()]
    return markdown_table(rows)


def quality_rows(results: Mapping[str, Any], real: Mapping[str, float]) -> list[dict[str, str]]:
    """The real frames' lip sync, the teacher's row and one row per arm (mean ± std over seeds)."""
    real_row = {"model": "real frames", **{m: seed_cell([real[m]]) if m in real else "" for m in QUALITY}}
    return [real_row, *image_quality_rows(results, QUALITY)]


def mouth_comparisons(results: Mapping[str, Any], pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Paired per-seed differences (a − b, 95 % t-interval, verdict) of every ``MOUTH_METRICS`` metric for
    ``pairs``."""
    rows = []
    for a, b in pairs:
        for metric, higher in MOUTH_METRICS.items():
            c = compare_arms(results, a, b, metric, higher_is_better=higher)
            if c is None:
                continue
            rows.append({"a": a, "b": b, "metric": metric + ("" if higher else " (lower is better)"),
                         "mean a − b": f"{c.mean:+.4f}",
                         "95 % CI": "n/a (n = 1)" if c.low is None else f"{c.low:+.4f} to {c.high:+.4f}",
                         "seeds": c.n, "verdict": c.verdict})
    return rows


def _spread_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, arm in results["arms"].items():
        row = {"arm": name}
        for metric in ("psnr", "lse_c", "lse_d"):
            values = [s.get(metric, math.nan) for s in arm["seeds"].values()]
            finite = [v for v in values if math.isfinite(v)]
            row[f"{metric} std"] = f"{mean_std(finite)[1]:.3g}" if len(finite) > 1 else "n/a"
        rows.append(row)
    return rows


def strip_section(task: Task, arms: Sequence[str], seed: int, run: Path, frames: int) -> tuple[Path, dict[str, Any]]:
    """``plots/frame_strip.png`` in ``run``: ``frames`` consecutive frames from a third of the way into the first
    test clip, as the masked input, the teacher, each arm's final student (seed ``seed``) and the real frames.
    Returns the path and which clip and frames it shows."""
    data = task.extras["data"]()
    clip = int(task.data.test[0]["clip"])
    n = data.clips[clip].n_frames
    start = max(0, min(n // 3, n - frames))
    shown = slice(start, start + frames)
    from kd_generative.tasks.talking_data import clip_inputs

    inputs = clip_inputs(data, clip)
    rows = {"input (masked)": inputs["input"][shown, :3], "teacher": clip_frames(task.teacher(), data, clip)[shown]}
    for arm in arms:
        weights = run / f"{arm}-seed{seed}" / "checkpoints" / "final.safetensors"
        if weights.is_file():
            rows[arm] = clip_frames(load_weights(task.student(seed), weights), data, clip)[shown]
    rows["real"] = inputs["target"][shown]
    path = frame_strip(rows, run / "plots" / "frame_strip.png", first_frame=start)
    record = data.clips[clip]
    utterance = data.corpus.utterances[record.utterance]
    return path, {"clip": clip, "frames": [start, start + frames], "sentence": utterance.text,
                  "voice": utterance.voice, "face": data.faces[record.face].name}


def _costs(task: Task, student_factory: Any) -> dict[str, dict[str, float]]:
    size = task.extras["size"]
    costs = {f"this run ({size} px)": frame_cost(task.extras["build_teacher"](), student_factory(), size)}
    costs["Wav2Lip scale (96 px, widths 16/32, 2 residual blocks per stage)"] = frame_cost(
        build_generator(96), build_generator(96, compact=True), 96)
    return costs


def gate_check(copy: Mapping[str, float], teacher: Mapping[str, float], margin: float = GATE_MARGIN_DB
               ) -> tuple[bool, str] | None:
    """Whether the teacher beats copying the reference frame where the audio matters, by ``margin`` dB of mouth-box
    PSNR (``psnr_mouth``) and on lip sync (a higher ``lse_c``), and the scores behind it; None when either lacks a
    score. The whole lower half is not the test: the copy gets everything but the mouth right, sharply."""
    needed = ("psnr_mouth", "lse_c")
    if not all(math.isfinite(d.get(m, math.nan)) for d in (copy, teacher) for m in needed):
        return None
    lead = teacher["psnr_mouth"] - copy["psnr_mouth"]
    scores = (f"mouth-box PSNR {teacher['psnr_mouth']:.2f} vs {copy['psnr_mouth']:.2f} dB (lead {lead:+.2f}, "
              f"needed ≥ {margin:g}); LSE-C {teacher['lse_c']:.3f} vs {copy['lse_c']:.3f}")
    return lead >= margin and teacher["lse_c"] > copy["lse_c"], scores


def gate_verdict(copy: Mapping[str, float], teacher: Mapping[str, float], students: Mapping[str, Mapping[str, float]],
                 margin: float = GATE_MARGIN_DB) -> str:
    """The gate (:func:`gate_check`) as report text, and which ``students`` (arm -> mean scores) do not beat the
    reference copy on mouth-box PSNR and LSE-C."""
    checked = gate_check(copy, teacher, margin)
    if checked is None:
        return "Gate: not judged (no mouth-box PSNR or LSE-C for the teacher or the reference copy)."
    passed, scores = checked
    if passed:
        text = f"Gate passed: the teacher beats copying the reference frame where the audio drives the face: {scores}."
    else:
        text = (f"**Gate failed**: the teacher does not beat copying the reference frame where the audio drives the "
                f"face ({scores}), so the arms' differences say nothing about distillation: use larger frames, more "
                "data or a longer-trained teacher.")
    below = [f"**{arm}** (mouth {s.get('psnr_mouth', math.nan):.2f} dB, LSE-C {s.get('lse_c', math.nan):.3f})"
             for arm, s in students.items()
             if not (s.get("psnr_mouth", -math.inf) > copy["psnr_mouth"] and s.get("lse_c", -math.inf) > copy["lse_c"])]
    if below:
        text += (f"\n\n**Students that do not beat the reference copy** on mouth-box PSNR and LSE-C: "
                 f"{', '.join(below)}. They learnt no more than the trivial guess; their differences do not test "
                 "distillation.")
    return text


def reference_copy_scores(task: Task, windows: Sequence[Mapping[str, Any]], clips: Sequence[int]) -> dict[str, float]:
    """The trivial baseline of a talking-face generator, copying the reference frame (input channels 3-5) into the
    target, scored like the students: lower-half PSNR / SSIM and mouth-box PSNR on ``windows``, and LSE-D / LSE-C /
    offset of every test clip in ``clips`` with its reference frames in place of generated ones."""
    from kd_generative.tasks.talking_data import clip_inputs

    data = task.extras["data"]()
    reference = torch.stack([w["input"][:, 3:6] for w in windows])
    target = torch.stack([w["target"] for w in windows])
    scores = {**lower_half_quality(reference, target),
              "psnr_mouth": mouth_psnr(reference, target, mouth_boxes(data, [w["clip"] for w in windows]))}
    copies = {c: clip_inputs(data, c)["input"][:, 3:6] for c in clips}
    scores.update(clip_sync(task.extras["experts"]()["scoring"], copies, data, task.extras["max_offset"]))
    return scores


def gate_section(copy: Mapping[str, float], results: Mapping[str, Any]) -> str:
    """The gate (:func:`gate_verdict`) and a table of the reference copy's, the teacher's and the students' (mean
    over seeds) lower-half PSNR / SSIM, mouth-box PSNR and lip sync."""
    columns = ("psnr", "ssim", "psnr_mouth", "lse_c", "lse_d", "offset")
    students = {name: {m: statistics.fmean(s.get(m, math.nan) for s in arm["seeds"].values()) for m in columns}
                for name, arm in results.get("arms", {}).items() if arm.get("seeds")}
    teacher = results.get("teacher", {}).get("test", {})
    named = {"reference copy": copy, "teacher": teacher, **{f"{k} (student, mean)": v for k, v in students.items()}}
    rows = [{"model": name, **{m: f"{s[m]:.3f}" if math.isfinite(s.get(m, math.nan)) else "" for m in columns}}
            for name, s in named.items()]
    return gate_verdict(copy, teacher, students) + "\n\n" + markdown_table(rows)


def wav2lip_sections(task: Task, arms: Sequence[str], seeds: Sequence[int], results: dict[str, Any], run: Path,
                     pairs: Sequence[tuple[str, str]], strip_frames: int = 6) -> list[tuple[str, str]]:
    """The study report's extra sections (see the module doc); adds ``results["wav2lip"]`` (costs, the real
    frames' lip sync, the experts' accuracies, the strip's clip) for ``results.json``."""
    run = Path(run)
    data = task.extras["data"]()
    experts = task.extras["experts"]()
    test_clips = sorted({int(c) for c, _ in task.data.test.windows.items})
    real = clip_sync(experts["scoring"], {c: data.clip_frames(c).float() / 255 for c in test_clips}, data,
                     task.extras["max_offset"])
    windows = [task.data.test[i] for i in range(len(task.data.test))]
    real["sync"] = window_sync(experts["scoring"], torch.stack([w["target"] for w in windows]),
                               torch.stack([w["mel"] for w in windows]))
    costs = _costs(task, lambda: task.student(seeds[0]))
    accuracy = task.extras["expert_accuracy"]()
    strip, shown = strip_section(task, arms, seeds[0], run, strip_frames)
    copy = reference_copy_scores(task, windows, test_clips)
    results["wav2lip"] = {"costs": costs, "real_sync": real, "reference_copy": copy, "expert_accuracy": accuracy,
                          "strip": shown, "counter": COUNTER}
    lip = mouth_comparisons(results, pairs)
    accuracy_text = ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items())
    return [
        ("Gate: the teacher against copying the reference frame", gate_section(copy, results)),
        ("Size and cost", f"Teacher (full generator) and compact student (no residual blocks, widths × "
                          f"multiplier); {COUNTER} (the results table above counts a window of 5 frames).\n\n"
                          + _cost_table(costs)),
        ("Image quality and lip sync (test split)",
         "`psnr` (dB) / `ssim`: the generated lower half against the real one; `psnr_mouth`: the mouth box only "
         "(lips and inner mouth, what the audio drives); `psnr_teacher` / `l1_teacher`: "
         "against the teacher's frames; `sync`: the scoring expert's mean in-sync probability per window; "
         "`lse_d` (lower is better) / `lse_c` (higher is better) / `offset` (mean |best offset|, frames): LSE-style "
         f"scores of every test clip generated frame by frame, offsets ±{task.extras['max_offset']} frames. "
         "Mean ± std over seeds.\n\n" + markdown_table(quality_rows(results, real))),
        ("Mouth and lip-sync comparisons", "Paired per-seed differences of the mouth-box PSNR and the lip-sync "
                                           "metrics (the headline comparisons above are on lower-half PSNR).\n\n"
                                           + (markdown_table(lip) if lip else "_none_\n")),
        ("Spread across seeds", "Standard deviation over seeds per arm (the paper leaves the GAN out because "
                                "adversarial training of the small generator is unstable).\n\n"
                                + markdown_table(_spread_rows(results))),
        ("Frame strip", f"Test clip {shown['clip']} ({shown['face']}, voice {shown['voice']}: "
                        f"\"{shown['sentence']}\"), frames {shown['frames'][0]}–{shown['frames'][1] - 1}; "
                        f"students of seed {seeds[0]}.\n\n"
                        f"![frame strip]({strip.relative_to(run).as_posix()})\n"),
        ("Teacher and experts", f"The teacher was {task.extras['teacher_note'] or 'see the summary'}. Experts: "
                                f"{task.extras['expert_note']}. Expert accuracy on in-sync / off-sync pairs: "
                                f"{accuracy_text}.\n"),
    ]
