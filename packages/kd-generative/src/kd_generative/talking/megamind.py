"""A real talking clip for evaluation: opencv-doc's ``Megamind.avi`` (270 frames, 24 fps, 720x528, AC-3
speech), read at run time from the Debian package with PyAV, never copied anywhere. A file there without an
audio track, or whose audio and video tracks differ in length by more than 0.2 s, is a ``ConfigError``.

Faces are found with scikit-image's LBP frontal-face cascade (``skimage.feature.Cascade``, the OpenCV cascade
file bundled with scikit-image) on every ``detect_every``-th frame at half resolution; boxes are held and
smoothed between detections, widened downward to take in the chin, and cropped square. Frames are resampled
to 25 fps (nearest earlier frame) so that windows of 5 frames meet 16 mel frames as in training. An audio
packet that does not decode is skipped (the file has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError

from kd_generative.talking.audio import MEL_STEPS, mel_spectrogram, mel_start
from kd_generative.talking.speech import SAMPLE_RATE

__all__ = ["LENGTH_TOLERANCE", "MEGAMIND", "MegamindClip", "check_tracks", "read_megamind"]

MEGAMIND = "Megamind.avi"

#: How far (seconds) the audio and the video track may differ in length: one window of 5 frames at 25 fps.
LENGTH_TOLERANCE = 0.2


@dataclass(frozen=True)
class MegamindClip:
    """Face crops ``frames`` uint8 ``(N, 3, S, S)`` at 25 fps, the clip's mel ``(80, M)``, the face box
    ``(top, left, side)`` of each source frame used, and how many audio packets were skipped."""

    frames: torch.Tensor
    mel: np.ndarray
    boxes: np.ndarray
    skipped_packets: int

    def windows(self, frames: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Aligned ``(frames (T, 3, S, S) in [0, 1], mel (1, 80, 16))`` for every window start."""
        out = []
        for s in range(self.frames.shape[0] - frames + 1):
            start = mel_start(s)
            if start + MEL_STEPS > self.mel.shape[1]:
                break
            out.append((self.frames[s:s + frames].float() / 255,
                        torch.from_numpy(np.ascontiguousarray(self.mel[:, start:start + MEL_STEPS])).unsqueeze(0)))
        return out


def _cascade() -> object:
    import skimage.data
    from skimage.feature import Cascade

    return Cascade(skimage.data.lbp_frontal_face_cascade_filename())


def _detect(cascade: object, rgb: np.ndarray) -> tuple[float, float, float] | None:
    from skimage.color import rgb2gray

    half = rgb2gray(rgb[::2, ::2])
    found = cascade.detect_multi_scale(img=half, scale_factor=1.2, step_ratio=1, min_size=(40, 40),  # type: ignore[attr-defined]
                                       max_size=(260, 260))
    if not found:
        return None
    best = max(found, key=lambda d: d["width"] * d["height"])
    return 2.0 * best["r"], 2.0 * best["c"], 2.0 * best["width"]


def _audio(container: object, stream: object) -> tuple[np.ndarray, int, int]:
    import av.error

    chunks, skipped, rate = [], 0, int(stream.rate)  # type: ignore[attr-defined]
    for packet in container.demux(stream):  # type: ignore[attr-defined]
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            skipped += 1
            continue
        for frame in decoded:
            chunks.append(frame.to_ndarray().astype(np.float32).reshape(len(frame.layout.channels), -1).mean(0))
    if not chunks:
        raise DataError("video", f"an audio track in {MEGAMIND}", "no decodable audio")
    return np.concatenate(chunks), rate, skipped


def check_tracks(video_seconds: float, audio_seconds: float | None, name: str, argument: str = "video") -> None:
    """Refuse a video without an audio track (``audio_seconds`` None) or whose tracks differ in length by more
    than :data:`LENGTH_TOLERANCE`: a ``ConfigError`` naming ``argument``."""
    if audio_seconds is None:
        raise ConfigError(argument, "a video with an audio track (the speech the mouth follows)", f"{name}: none")
    if abs(video_seconds - audio_seconds) > LENGTH_TOLERANCE:
        raise ConfigError(argument, f"audio and video of the same length (within {LENGTH_TOLERANCE} s)",
                          f"{name}: video {video_seconds:.2f} s, audio {audio_seconds:.2f} s")


def _video_seconds(container: object) -> float:
    stream = container.streams.video[0]  # type: ignore[attr-defined]
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return float(container.duration or 0) / 1e6  # type: ignore[attr-defined]


def read_megamind(directory: str | Path | None = None, size: int = 48, detect_every: int = 3,
                  max_frames: int | None = None) -> MegamindClip:
    """Read the clip (see the module docstring). ``directory``: opencv-doc's data folder (default: found as
    :func:`kd_generative.data.photos.opencv_data_dir` does); ``max_frames``: stop after this many source
    frames."""
    import av
    import torchaudio.functional as taf
    from PIL import Image

    from kd_generative.data.photos import opencv_data_dir

    path = opencv_data_dir(directory) / MEGAMIND
    if not path.is_file():
        raise DataError("video", f"{MEGAMIND} of opencv-doc", str(path), hint="apt-get install --reinstall opencv-doc")
    with av.open(str(path)) as container:  # no audio track: refused before any decoding
        if not container.streams.audio:
            check_tracks(_video_seconds(container), None, path.name)
    cascade = _cascade()
    crops, boxes, box = [], [], None
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        fps = float(video.average_rate)
        for index, frame in enumerate(container.decode(video=0)):
            if max_frames is not None and index >= max_frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            if index % detect_every == 0:
                found = _detect(cascade, rgb)
                if found is not None:
                    near = box is not None and abs(found[0] - box[0]) + abs(found[1] - box[1]) < 0.3 * box[2]
                    box = tuple(0.5 * a + 0.5 * b for a, b in zip(box, found)) if near else found  # cut: jump
            if box is None:
                continue  # no face yet
            top, left, side = box
            side2 = 1.3 * side
            cy, cx = top + 0.7 * side, left + 0.5 * side
            t, lft = round(cy - side2 / 2), round(cx - side2 / 2)
            s = round(side2)
            padded = np.pad(rgb, ((s, s), (s, s), (0, 0)), mode="edge")[t + s:t + 2 * s, lft + s:lft + 2 * s]
            crops.append((index, np.asarray(Image.fromarray(padded).resize((size, size), Image.Resampling.BICUBIC))))
            boxes.append((t, lft, s))
    with av.open(str(path)) as container:
        samples, rate, skipped = _audio(container, container.streams.audio[0])
        check_tracks(_video_seconds(container), len(samples) / rate, path.name)
    if not crops:
        raise DataError("video", f"a face the LBP cascade finds in {MEGAMIND}", "none")
    wave = taf.resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
    first = crops[0][0]
    by_index = dict(crops)
    last = crops[-1][0]
    picked = []
    j = 0
    while True:  # 25 fps timeline starting at the first face frame
        source = first + int(j * fps / 25.0 + 1e-6)
        if source > last:
            break
        picked.append(by_index.get(source, picked[-1] if picked else crops[0][1]))
        j += 1
    offset = round(first / fps * SAMPLE_RATE)
    mel = mel_spectrogram(wave[offset:])
    frames = torch.from_numpy(np.stack(picked)).permute(0, 3, 1, 2).contiguous()
    return MegamindClip(frames, mel, np.asarray(boxes, np.int64), skipped)
