"""The talking-face task's data: :class:`~kd_generative.talking.dataset.TalkingFaceData` cut into splits that
share no face and no sentence (and, with ``test_voices``, no voice between test and the rest), as generator-ready
window items, and whole clips as generator inputs (for lip-sync scores and frame strips).

An item is a window of ``T = 5`` frames: ``input`` ``(T, 6, S, S)`` (the target with its lower half zeroed,
then a reference window of the same clip half a clip away, as Wav2Lip feeds its generator), ``frame_mels``
``(T, 1, 80, 16)`` (the mel window centred on each frame), ``mel`` ``(1, 80, 16)`` (the window's own audio,
what the sync expert reads), ``target`` ``(T, 3, S, S)`` in [0, 1], ``clip`` and ``start``.
"""

from __future__ import annotations

from typing import Any

import torch
from kd_core.errors import ConfigError, KDError
from kd_core.task import Splits
from torch.utils.data import Dataset

from kd_generative.talking.dataset import SPLITS, TalkingConfig, TalkingFaceData, TalkingWindows
from kd_generative.talking.megamind import check_tracks

__all__ = ["WindowItems", "build_data", "clip_inputs", "split_clips", "talking_forward", "talking_splits"]


def talking_forward(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """How the task feeds a generator: ``model(batch["input"], batch["frame_mels"])``."""
    return model(batch["input"], batch["frame_mels"])


class WindowItems(Dataset):
    """Generator-ready items of ``windows`` (see the module doc)."""

    def __init__(self, windows: TalkingWindows) -> None:
        self.windows = windows

    @property
    def data(self) -> TalkingFaceData:
        """The data the windows come from."""
        return self.windows.data

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.windows[index]
        return {"input": torch.cat([item["masked"], item["reference"]], dim=1), "frame_mels": item["frame_mels"],
                "mel": item["mel"], "target": item["target"], "clip": item["clip"], "start": item["start"]}


_FIELDS = {"size": "data.size", "sentences": "data.sentences", "voices": "data.voices", "faces": "data.faces",
           "stride": "data.stride", "faces_per_utterance": "data.faces_per_utterance", "split": "data"}


def build_data(size: int, sentences: list[int] | None, voices: list[str], faces_per_utterance: int, stride: int,
               drift: float, seed: int) -> TalkingFaceData:
    """The talking-face data (speech synthesized and aligned once, cached); errors name the recipe field."""
    try:
        return TalkingFaceData(TalkingConfig(size=size, sentences=tuple(sentences) if sentences is not None else None,
                                             voices=tuple(voices), faces_per_utterance=faces_per_utterance,
                                             stride=stride, drift=drift, seed=seed))
    except KDError as err:
        raise type(err)(_FIELDS.get(err.argument, err.argument), err.expected, err.received, hint=err.hint) from None


def split_clips(data: TalkingFaceData, test_voices: list[str]) -> dict[str, list[int]]:
    """Clip indices per split. With ``test_voices``, test keeps only their clips and train/val only the others."""
    held = set(test_voices)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for i, clip in enumerate(data.clips):
        voice = data.corpus.utterances[clip.utterance].voice
        if held and (clip.split == "test") != (voice in held):
            continue
        out[clip.split].append(i)
    return out


def _windows(data: TalkingFaceData, clips: list[int], stride: int, split: str) -> TalkingWindows:
    if not clips:
        raise ConfigError("data", f"at least one {split} clip (more sentences, voices or faces)", "0 clips")
    windows = TalkingWindows(data, clips)
    t = data.config.frames
    windows.items = [(c, s) for c in clips for s in range(2, data.clips[c].n_frames - t - 2 + 1, stride)]
    if not windows.items:
        raise ConfigError("data", f"{split} clips long enough for one window", f"{len(clips)} clips")
    return windows


def talking_splits(data: TalkingFaceData, test_voices: list[str], stride: int, eval_stride: int) -> Splits:
    """Train windows every ``stride`` frames, val and test windows every ``eval_stride`` frames."""
    clips = split_clips(data, test_voices)
    return Splits(train=WindowItems(_windows(data, clips["train"], stride, "train")),
                  val=WindowItems(_windows(data, clips["val"], eval_stride, "val")),
                  test=WindowItems(_windows(data, clips["test"], eval_stride, "test")))


def clip_inputs(data: TalkingFaceData, clip: int) -> dict[str, torch.Tensor]:
    """Generator inputs for every frame of ``clip``: ``input`` ``(N, 6, S, S)`` (masked frame, reference frame
    half a clip away), ``frame_mels`` ``(N, 1, 80, 16)`` (centred windows, clamped at the clip's ends), ``target``
    ``(N, 3, S, S)`` and the clip's whole ``mel`` ``(80, M)``. Audio and video of different lengths (more than
    0.2 s apart) are a ``ConfigError``."""
    record = data.clips[clip]
    utterance = data.corpus.utterances[record.utterance]
    n, t = record.n_frames, data.config.frames
    check_tracks(n / data.config.fps, utterance.duration, f"clip {clip}", argument="clip")
    if n < t:
        raise ConfigError("clip", f"a clip of at least {t} frames", n)
    frames = data.clip_frames(clip).float() / 255
    masked = frames.clone()
    masked[..., frames.shape[-2] // 2:, :] = 0
    reference = frames[[(j + n // 2) % n for j in range(n)]]
    mels = torch.stack([data.mel_window(record, min(max(j - 2, 0), n - t)) for j in range(n)])
    return {"input": torch.cat([masked, reference], dim=1), "frame_mels": mels, "target": frames,
            "mel": torch.from_numpy(utterance.mel)}
