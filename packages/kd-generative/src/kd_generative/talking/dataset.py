"""Talking-face windows: real faces whose mouths follow force-aligned speech, with the matching mel windows.

A *clip* is one aligned utterance (:mod:`corpus`) rendered on one face at 25 fps: frame ``i``'s mouth shape
is the viseme track of the phones active in ``[i/25, (i+1)/25)`` (:mod:`visemes`), drawn by warping the
face's own lower-face pixels (:mod:`render`), plus a slow sub-pixel head drift. Frames are rendered when a
window is read (a pure function of the cached speech and the face), so the cache holds only the speech.

Splits are disjoint in identity *and* sentence: a split's clips pair its sentences (:func:`sentence_split`)
with its faces (:func:`faces.face_split`), each utterance on ``faces_per_utterance`` faces taken in turn.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError

from kd_generative.talking.audio import MEL_STEPS, mel_start
from kd_generative.talking.corpus import SpeechCorpus, Utterance, build_corpus, sentence_split
from kd_generative.talking.faces import Face, face_split, load_faces
from kd_generative.talking.render import render_mouths
from kd_generative.talking.visemes import mouth_track

__all__ = ["Clip", "TalkingConfig", "TalkingFaceData", "TalkingWindows", "lower_half"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TalkingConfig:
    """What the data is built from. ``size``: frame side in pixels (48 default; 96 as in Wav2Lip);
    ``frames``: T, video frames per window; ``sentences``/``voices``: subsets (``None`` = all);
    ``faces``: face names (``None`` = all available); ``stride``: frames between window starts;
    ``smooth``: coarticulation weight; ``drift``: head drift amplitude in pixels at 48 px; ``seed``."""

    size: int = 48
    frames: int = 5
    fps: float = 25.0
    sentences: tuple[int, ...] | None = None
    voices: tuple[str, ...] | None = None
    faces: tuple[str, ...] | None = None
    faces_per_utterance: int = 2
    stride: int = 2
    smooth: float = 0.25
    drift: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 12 or self.size % 2:
            raise ConfigError("size", "an even integer >= 12", self.size)
        if self.frames != 5 or self.fps != 25.0:
            raise ConfigError("frames/fps", "5 frames at 25 fps (16 mel frames per window)", (self.frames, self.fps))
        for name in ("faces_per_utterance", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "an integer >= 1", value)


@dataclass(frozen=True)
class Clip:
    """One utterance on one face: indices into the corpus and the face list, the split, and per-frame tracks
    (``shape`` ``(N, 2)`` openness/width, ``shift`` ``(N, 2)`` head drift in pixels)."""

    utterance: int
    face: int
    split: str
    shape: np.ndarray
    shift: np.ndarray

    @property
    def n_frames(self) -> int:
        """How many video frames the clip has."""
        return int(self.shape.shape[0])


def lower_half(frames: torch.Tensor) -> torch.Tensor:
    """The lower half (rows ``S//2:``) of frames ``(..., 3, S, S)``."""
    return frames[..., frames.shape[-2] // 2:, :]


def _drift(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    steps = rng.normal(size=(n + 8, 2))
    kernel = np.hanning(9)
    walk = np.stack([np.convolve(steps[:, k], kernel / kernel.sum(), mode="valid") for k in range(2)], 1)
    walk = walk / (np.abs(walk).max() + 1e-9) * amplitude
    return walk[:n].astype(np.float32)


class TalkingFaceData:
    """The corpus, the faces and every clip of every split (see the module docstring)."""

    def __init__(self, config: TalkingConfig | None = None, reuse: bool = True) -> None:
        self.config = config = config or TalkingConfig()
        self.corpus: SpeechCorpus = build_corpus(config.sentences, config.voices, reuse=reuse)
        self.faces: list[Face] = load_faces(config.size, config.faces)
        self.clips: list[Clip] = []
        amplitude = config.drift * config.size / 48
        for split in SPLITS:
            faces = [i for i, f in enumerate(self.faces) if face_split(f.name) == split]
            utterances = [i for i, u in enumerate(self.corpus.utterances) if sentence_split(u.sentence) == split]
            if not faces:
                continue
            for k, u in enumerate(utterances):
                utterance = self.corpus.utterances[u]
                n = self._n_frames(utterance)
                track = mouth_track(utterance.phones, n, config.fps, config.smooth)
                for j in range(config.faces_per_utterance):
                    face = faces[(k * config.faces_per_utterance + j) % len(faces)]
                    rng = np.random.default_rng([config.seed, u, face])
                    self.clips.append(Clip(u, face, split, track, _drift(rng, n, amplitude)))
        self._frames: dict[int, torch.Tensor] = {}
        self._face_tensors = torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 255
                                          for f in self.faces]) if self.faces else torch.empty(0)

    def _n_frames(self, utterance: Utterance) -> int:
        by_audio = int(utterance.duration * self.config.fps)
        by_mel = int((utterance.mel.shape[1] - MEL_STEPS) * self.config.fps / 80) + self.config.frames
        return max(0, min(by_audio, by_mel))

    def render(self, clip: Clip, frames: np.ndarray | list[int]) -> torch.Tensor:
        """Frames ``(len(frames), 3, S, S)`` in [0, 1] of ``clip`` at the given indices."""
        index = np.asarray(frames, dtype=np.int64)
        n = len(index)
        face = self._face_tensors[clip.face].expand(n, -1, -1, -1)
        mouth = torch.tensor(self.faces[clip.face].mouth, dtype=torch.float32).expand(n, 3)
        return render_mouths(face, mouth, torch.from_numpy(clip.shape[index]), torch.from_numpy(clip.shift[index]))

    def clip_frames(self, index: int) -> torch.Tensor:
        """Every frame of clip ``index`` as uint8 ``(N, 3, S, S)``, rendered once and kept in memory."""
        if index not in self._frames:
            clip = self.clips[index]
            self._frames[index] = (self.render(clip, np.arange(clip.n_frames)) * 255).round().to(torch.uint8)
        return self._frames[index]

    def mel_window(self, clip: Clip, frame: int) -> torch.Tensor:
        """The ``(1, 80, 16)`` mel window of the video window starting at ``frame``."""
        mel = self.corpus.utterances[clip.utterance].mel
        start = mel_start(frame, self.config.fps)
        if frame < 0 or start + MEL_STEPS > mel.shape[1]:
            raise ConfigError("frame", f"a window start whose mel lies inside the clip (0..{clip.n_frames - 5})",
                              frame)
        return torch.from_numpy(np.ascontiguousarray(mel[:, start:start + MEL_STEPS])).unsqueeze(0)

    def split(self, name: str) -> TalkingWindows:
        """The windows of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ConfigError("split", "'train', 'val' or 'test'", name)
        return TalkingWindows(self, [i for i, c in enumerate(self.clips) if c.split == name])

    def manifest(self) -> dict[str, Any]:
        """What determines every sample: the config, the speech cache key, the faces' pixel hashes, the clips."""
        faces = {f.name: hashlib.sha256(f.image.tobytes()).hexdigest()[:16] for f in self.faces}
        clips = [{"utterance": c.utterance, "sentence": self.corpus.utterances[c.utterance].sentence,
                  "voice": self.corpus.utterances[c.utterance].voice, "face": self.faces[c.face].name,
                  "split": c.split, "frames": c.n_frames,
                  "tracks": hashlib.sha256(c.shape.tobytes() + c.shift.tobytes()).hexdigest()[:16]}
                 for c in self.clips]
        mels = hashlib.sha256(b"".join(u.mel.tobytes() for u in self.corpus.utterances)).hexdigest()[:16]
        return {"config": asdict(self.config), "speech": self.corpus.key, "mels": mels, "faces": faces,
                "clips": clips, "rejected": list(self.corpus.rejected)}


class TalkingWindows(torch.utils.data.Dataset):
    """Windows of ``T`` frames of some clips, starting every ``stride`` frames from frame 2 (so each frame
    has its own centred mel window). Item: a dict with ``target`` ``(T, 3, S, S)``, ``masked`` (target, lower
    half zeroed), ``reference`` (T frames of the same clip far from the target), ``mel`` ``(1, 80, 16)``,
    ``frame_mels`` ``(T, 1, 80, 16)`` (centred on each frame), ``shape`` ``(T, 2)``, ``clip``, ``start``."""

    def __init__(self, data: TalkingFaceData, clips: list[int]) -> None:
        self.data = data
        t, stride = data.config.frames, data.config.stride
        self.items: list[tuple[int, int]] = []
        for c in clips:
            n = data.clips[c].n_frames
            self.items.extend((c, s) for s in range(2, n - t - 2 + 1, stride))
        if not self.items:
            raise DataError("split", "clips long enough for one window", f"{len(clips)} clips")

    def __len__(self) -> int:
        return len(self.items)

    def valid_starts(self, clip: int) -> range:
        """Every start ``s`` whose window and mel lie inside ``clip`` (for off-sync audio)."""
        return range(0, self.data.clips[clip].n_frames - self.data.config.frames + 1)

    def reference_start(self, clip: int, start: int) -> int:
        """A start for the reference window: half the clip away from ``start`` (wrapping round)."""
        n = len(self.valid_starts(clip))
        return (start + n // 2) % n

    def __getitem__(self, index: int) -> dict[str, Any]:
        c, s = self.items[index]
        data, t = self.data, self.data.config.frames
        clip = data.clips[c]
        r = self.reference_start(c, s)
        frames = data.clip_frames(c)
        target, reference = frames[s:s + t].float() / 255, frames[r:r + t].float() / 255
        masked = target.clone()
        masked[..., target.shape[-2] // 2:, :] = 0
        return {"target": target, "masked": masked, "reference": reference, "mel": data.mel_window(clip, s),
                "frame_mels": torch.stack([data.mel_window(clip, s + i - 2) for i in range(t)]),
                "shape": torch.from_numpy(clip.shape[s:s + t]), "clip": c, "start": s}
