"""Audio I/O: soundfile reads and writes, torchaudio resamples; every clip becomes 16 kHz mono float32.

torchaudio's own ``load``/``save`` are gone in the pinned version, so files go through ``soundfile``.
``read_audio`` turns any file soundfile can read (WAV, FLAC, OGG...) at any sample rate into a 1-D float32
tensor at ``SAMPLE_RATE``; with ``resample=False`` a file at another rate is an error instead. An unreadable
or zero-length file is a ``ConfigError`` naming the file. ``Utterance`` is the record every reader returns.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from kd_core.errors import ConfigError

__all__ = ["SAMPLE_RATE", "Utterance", "audio_info", "decode_audio", "encode_audio", "read_audio", "to_rate"]

SAMPLE_RATE = 16000
"""The sample rate every kd-speech waveform has after reading (Hz)."""


@dataclass(frozen=True)
class Utterance:
    """One audio file with its labels: the record the readers return and ``SpeechDataset`` reads.

    ``speaker``: the voice or speaker (splits keep speakers apart); ``split``: ``"train"``, ``"val"``,
    ``"test"`` or ``""``; ``info``: anything else the source knows (synthesizer settings, slots...).
    """

    path: Path
    transcript: str = ""
    intent: str | None = None
    speaker: str = ""
    split: str = ""
    info: dict[str, Any] = field(default_factory=dict, compare=False)


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def to_rate(waveform: torch.Tensor, sample_rate: int, target: int = SAMPLE_RATE) -> torch.Tensor:
    """``waveform`` (``[..., samples]``) resampled from ``sample_rate`` to ``target`` with torchaudio."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError("sample_rate", "a positive integer (Hz)", sample_rate)
    if sample_rate == target:
        return waveform
    return AF.resample(waveform, sample_rate, target)


def _checked(data: np.ndarray, sample_rate: int, name: str, target: int, resample: bool) -> torch.Tensor:
    if data.size == 0:
        raise ConfigError(name, "audio with at least one sample", "a zero-length file")
    if sample_rate != target and not resample:
        raise ConfigError(name, f"audio at {target} Hz (resampling is turned off)", f"{sample_rate} Hz",
                          hint="convert the file, or read it with resampling on")
    waveform = torch.from_numpy(np.ascontiguousarray(_mono(data), dtype=np.float32))
    return to_rate(waveform, sample_rate, target).contiguous()


def read_audio(path: str | os.PathLike, target: int = SAMPLE_RATE, resample: bool = True) -> torch.Tensor:
    """A file as a 1-D float32 tensor in [-1, 1] at ``target`` Hz, mixed down to mono.

    A missing, unreadable or zero-length file, or (with ``resample=False``) one at another sample rate, is a
    ``ConfigError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "an existing audio file", "no such file")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise ConfigError(str(path), "a readable audio file (WAV, FLAC, OGG...)", "unreadable",
                          hint=str(error).splitlines()[0] if str(error) else "") from None
    return _checked(data, int(sample_rate), str(path), target, resample)


def decode_audio(data: bytes, name: str = "audio", target: int = SAMPLE_RATE, resample: bool = True) -> torch.Tensor:
    """Encoded audio bytes (e.g. a synthesizer's WAV output) as a 1-D float32 tensor at ``target`` Hz."""
    try:
        array, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ConfigError(name, "readable audio bytes", f"{len(data)} bytes that soundfile cannot decode",
                          hint=str(error).splitlines()[0] if str(error) else "") from None
    return _checked(array, int(sample_rate), name, target, resample)


def encode_audio(waveform: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE, fmt: str = "flac") -> bytes:
    """A mono waveform in [-1, 1] as 16-bit PCM ``"wav"`` or ``"flac"`` bytes (byte-identical for equal input)."""
    if fmt not in ("wav", "flac"):
        raise ConfigError("fmt", "'wav' or 'flac'", fmt)
    array = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(array.astype(np.float32), -1.0, 1.0), sample_rate, format=fmt.upper(),
             subtype="PCM_16")
    return buffer.getvalue()


def audio_info(path: str | os.PathLike, target: int = SAMPLE_RATE, resample: bool = True) -> tuple[int, int]:
    """``(frames, sample_rate)`` of a file from its header, checked like ``read_audio`` without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "an existing audio file", "no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise ConfigError(str(path), "a readable audio file (WAV, FLAC, OGG...)", "unreadable",
                          hint=str(error).splitlines()[0] if str(error) else "") from None
    if info.frames <= 0:
        raise ConfigError(str(path), "audio with at least one sample", "a zero-length file")
    if info.samplerate != target and not resample:
        raise ConfigError(str(path), f"audio at {target} Hz (resampling is turned off)", f"{info.samplerate} Hz",
                          hint="convert the file, or read it with resampling on")
    return int(info.frames), int(info.samplerate)
