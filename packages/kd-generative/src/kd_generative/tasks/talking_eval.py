"""Scoring a talking-face generator: image quality of the generated lower half, closeness to the teacher, and
lip sync by a SyncNet-style expert.

- ``psnr`` (dB) and ``ssim`` of the lower half of every generated frame against the real one (the upper half
  is given to the generator); ``l1``: the whole frame.
- ``psnr_mouth`` (dB): the same over the mouth box of each frame (:func:`kd_generative.talking.render.mouth_box`),
  the part of the frame the audio drives: copying the reference frame gets the rest of the lower half right.
- ``psnr_teacher``, ``l1_teacher``: the same against the teacher's frames (left out when scoring the teacher).
- ``sync``: the expert's mean in-sync probability of each window's generated lower halves and its own audio.
- ``lse_d``, ``lse_c``, ``offset``: every clip of the batches generated frame by frame, scored as LSE-D / LSE-C
  (:func:`kd_generative.talking.lipsync.lip_sync`; mean over clips) and the mean absolute best offset in frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from kd_core.signals import Forward
from kd_core.task import Evaluator
from torch import nn

from kd_generative.metrics import psnr, ssim
from kd_generative.talking.dataset import TalkingFaceData, lower_half
from kd_generative.talking.expert import SyncExpert, sync_probability
from kd_generative.talking.lipsync import lip_sync
from kd_generative.talking.render import mouth_box
from kd_generative.tasks.talking_data import clip_inputs, talking_forward

__all__ = [
    "clip_frames",
    "clip_sync",
    "generated_windows",
    "lower_half_quality",
    "mouth_boxes",
    "mouth_psnr",
    "talking_evaluator",
    "talking_validator",
    "window_sync",
]

_CHUNK = 32  # windows (or frames) per forward pass when scoring


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def generated_windows(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward = talking_forward
                      ) -> dict[str, torch.Tensor]:
    """``frames`` (the model's, clamped to [0, 1]), ``target``, ``mel``, ``clip`` and ``start`` of every window of
    ``batches``, on the CPU (eval mode, no gradients, ``_CHUNK`` windows per pass)."""
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("frames", "target", "mel", "clip", "start")}
    try:
        with torch.no_grad():
            for batch in batches:
                n = len(batch["target"])
                for i in range(0, n, _CHUNK):
                    part = {k: v[i:i + _CHUNK] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                    out["frames"].append(forward(model, part).float().clamp(0, 1).cpu())
                for key in ("target", "mel", "clip", "start"):
                    out[key].append(torch.as_tensor(batch[key]).cpu())
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def lower_half_quality(frames: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """``psnr`` and ``ssim`` of the lower halves of ``frames`` ``(N, T, 3, S, S)`` in [0, 1] against
    ``reference`` (mean over frames)."""
    a, b = lower_half(frames).flatten(0, 1), lower_half(reference).flatten(0, 1)
    return {"psnr": float(psnr(a, b, data_range=(0.0, 1.0))), "ssim": float(ssim(a, b, data_range=(0.0, 1.0)))}


def mouth_boxes(data: TalkingFaceData, clips: Iterable[int]) -> list[tuple[slice, slice]]:
    """The mouth box (rows, columns) of the face of each clip index in ``clips``."""
    return [mouth_box(data.faces[data.clips[int(c)].face].mouth, data.config.size) for c in clips]


def mouth_psnr(frames: torch.Tensor, reference: torch.Tensor, boxes: Sequence[tuple[slice, slice]]) -> float:
    """Mean PSNR (dB) of the mouth boxes of ``frames`` ``(N, T, 3, S, S)`` in [0, 1] against ``reference``, window
    ``i`` cropped to ``boxes[i]`` (rows, columns); one value per frame, averaged like ``psnr``."""
    if len(boxes) != len(frames):
        raise ValueError(f"mouth_psnr: {len(frames)} windows but {len(boxes)} boxes")
    groups: dict[tuple[int, int, int, int], list[int]] = {}  # windows that share a box are cropped together
    for i, (rows, cols) in enumerate(boxes):
        groups.setdefault((rows.start, rows.stop, cols.start, cols.stop), []).append(i)
    values = []
    for index in groups.values():
        rows, cols = boxes[index[0]]
        a, b = frames[index][..., rows, cols].flatten(0, 1), reference[index][..., rows, cols].flatten(0, 1)
        values.append(psnr(a, b, data_range=(0.0, 1.0), reduction="none"))
    return float(torch.cat(values).mean())


@torch.no_grad()
def window_sync(expert: SyncExpert, frames: torch.Tensor, mel: torch.Tensor) -> float:
    """The expert's mean in-sync probability of windows ``frames`` ``(N, T, 3, S, S)`` with their ``mel``."""
    expert = expert.eval()
    values = []
    for i in range(0, len(frames), 4 * _CHUNK):
        face = expert.embed_face(lower_half(frames[i:i + 4 * _CHUNK]).flatten(1, 2))
        values.append(sync_probability(face, expert.embed_audio(mel[i:i + 4 * _CHUNK])))
    return float(torch.cat(values).mean())


@torch.no_grad()
def clip_frames(model: nn.Module, data: TalkingFaceData, clip: int) -> torch.Tensor:
    """Every frame of ``clip`` generated by ``model`` frame by frame (:func:`clip_inputs`), ``(N, 3, S, S)`` in
    [0, 1] on the CPU (eval mode)."""
    was_training = model.training
    model.eval()
    inputs = clip_inputs(data, clip)
    device = _device(model)
    try:
        parts = [model(inputs["input"][i:i + 4 * _CHUNK].to(device),
                       inputs["frame_mels"][i:i + 4 * _CHUNK].to(device)).float().clamp(0, 1).cpu()
                 for i in range(0, len(inputs["input"]), 4 * _CHUNK)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def clip_sync(expert: SyncExpert, clips: dict[int, torch.Tensor], data: TalkingFaceData, max_offset: int
              ) -> dict[str, float]:
    """``lse_d``, ``lse_c`` and ``offset`` (mean |best offset|) over ``clips`` (clip index -> its frames)."""
    scores = [lip_sync(expert.cpu(), frames, data.corpus.utterances[data.clips[c].utterance].mel,
                       max_offset=max_offset, fps=data.config.fps) for c, frames in clips.items()]
    return {"lse_d": float(np.mean([s.distance for s in scores])),
            "lse_c": float(np.mean([s.confidence for s in scores])),
            "offset": float(np.mean([abs(s.offset) for s in scores]))}


def talking_validator(model: nn.Module, batches: Iterable[Mapping[str, Any]], forward: Forward = talking_forward
                      ) -> dict[str, float]:
    """``psnr`` (lower half, dB) and ``l1`` (whole frame): what is logged after every epoch."""
    got = generated_windows(model, batches, forward)
    a, b = lower_half(got["frames"]).flatten(0, 1), lower_half(got["target"]).flatten(0, 1)
    return {"psnr": float(psnr(a, b, data_range=(0.0, 1.0))), "l1": float((got["frames"] - got["target"]).abs().mean())}


def talking_evaluator(data: Callable[[], TalkingFaceData], teacher: Callable[[], nn.Module],
                      expert: Callable[[], SyncExpert], max_offset: int = 6) -> Evaluator:
    """An evaluator returning the metrics of the module doc. ``data``, ``teacher`` and ``expert`` are called when
    first needed; the teacher's frames of a window are computed once and kept."""
    kept: dict[tuple[int, int], torch.Tensor] = {}

    def teacher_frames(batches: list[Mapping[str, Any]], forward: Forward, keys: list[tuple[int, int]],
                       device: torch.device) -> torch.Tensor:
        if any(k not in kept for k in keys):
            reference = teacher().to(device)
            got = generated_windows(reference, batches, forward)
            kept.update({(int(c), int(s)): f for c, s, f in zip(got["clip"], got["start"], got["frames"])})
        return torch.stack([kept[k] for k in keys])

    def evaluate(model: nn.Module, batches: Iterable[Mapping[str, Any]],
                 forward: Forward = talking_forward) -> dict[str, float]:
        batches = list(batches)
        got = generated_windows(model, batches, forward)
        source = data()
        scores = {**lower_half_quality(got["frames"], got["target"]),
                  "psnr_mouth": mouth_psnr(got["frames"], got["target"], mouth_boxes(source, got["clip"])),
                  "l1": float((got["frames"] - got["target"]).abs().mean()),
                  "sync": window_sync(expert().cpu(), got["frames"], got["mel"])}
        if teacher() is not model:
            keys = [(int(c), int(s)) for c, s in zip(got["clip"], got["start"])]
            reference = teacher_frames(batches, forward, keys, _device(model))
            scores["psnr_teacher"] = lower_half_quality(got["frames"], reference)["psnr"]
            scores["l1_teacher"] = float((got["frames"] - reference).abs().mean())
        clips = {c: clip_frames(model, source, c) for c in sorted({int(c) for c in got["clip"]})}
        scores.update(clip_sync(expert(), clips, source, max_offset))
        return scores

    return evaluate
