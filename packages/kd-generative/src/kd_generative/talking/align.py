"""Phone timings by forced alignment with pocketsphinx (PyPI ``pocketsphinx`` 5.x, its bundled en-us model).

Two passes over the same audio, as pocketsphinx documents: ``set_align_text`` then a decode gives the word
segmentation; ``set_alignment`` then a second decode gives phones with start and duration in 10 ms frames. A
word the first pass could not reach (pocketsphinx then returns a partial path) makes the utterance fail with
:class:`AlignmentError` rather than produce wrong timings. Silence is padded before alignment (without it
the phone pass often loses its path in the first or last word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from kd_core.errors import DataError

from kd_generative.talking.speech import SAMPLE_RATE, normalise_text

__all__ = ["AlignmentError", "Phone", "align_phones", "aligner_version"]

_FRAME = 0.01  # pocketsphinx frames are 10 ms


class AlignmentError(DataError):
    """pocketsphinx could not force-align the text to the audio (a word missing from the path)."""


@dataclass(frozen=True)
class Phone:
    """One aligned phone: its CMU/ARPAbet ``name`` (``SIL`` for silence) and its span in seconds."""

    name: str
    start: float
    end: float


@cache
def _decoder() -> Any:
    try:
        from pocketsphinx import Decoder
    except ImportError as error:
        raise DataError("pocketsphinx", "the pocketsphinx package (forced alignment)", "not installed",
                        hint="pip install pocketsphinx") from error
    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


def aligner_version() -> str:
    """pocketsphinx's version (part of cache keys)."""
    from importlib.metadata import version

    try:
        return version("pocketsphinx")
    except Exception as error:
        raise DataError("pocketsphinx", "the pocketsphinx package (forced alignment)", "not installed",
                        hint="pip install pocketsphinx") from error


def _decode(decoder: Any, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def align_phones(samples: np.ndarray, text: str, pad: float = 0.3) -> list[Phone]:
    """Phones of ``text`` in ``samples`` (16 kHz float mono), monotone and covering ``[0, len/16000]``.

    ``pad`` seconds of silence are added on both sides for the aligner and removed from the timings. Gaps
    are filled with ``SIL``; every phone has positive length. :class:`AlignmentError` when a word cannot be
    aligned or is not in the dictionary.
    """
    text = normalise_text(text)
    decoder = _decoder()
    missing = [w for w in text.split() if decoder.lookup_word(w) is None]
    if missing:
        raise AlignmentError("text", "words in pocketsphinx's en-us dictionary", missing)
    duration = len(samples) / SAMPLE_RATE
    silence = np.zeros(int(pad * SAMPLE_RATE), np.float32)
    padded = np.concatenate([silence, np.asarray(samples, np.float32), silence])
    pcm = (np.clip(padded, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder.set_align_text(text)
    try:
        _decode(decoder, pcm)
        segments = decoder.seg() or []
    except RuntimeError as error:
        raise AlignmentError("audio", f"speech pocketsphinx can align to {text!r}", str(error)) from error
    words = [re.sub(r"\(\d+\)$", "", s.word) for s in segments if not s.word.startswith(("<", "["))]
    if words != text.split():
        raise AlignmentError("audio", f"speech in which pocketsphinx finds every word of {text!r}", " ".join(words))
    try:
        decoder.set_alignment()
        _decode(decoder, pcm)
        alignment = decoder.get_alignment()
    except RuntimeError as error:
        raise AlignmentError("audio", f"phones pocketsphinx can align to {text!r}", str(error)) from error
    raw = [(p.name, round(p.start * _FRAME - pad, 3), round((p.start + p.duration) * _FRAME - pad, 3))
           for word in alignment for p in word]
    return _cover(raw, duration)


def _cover(raw: list[tuple[str, float, float]], duration: float) -> list[Phone]:
    """Clip to ``[0, duration]``, map fillers to ``SIL``, fill gaps, drop empty spans, merge repeated SIL."""
    phones: list[Phone] = []
    cursor = 0.0
    for name, start, end in sorted(raw, key=lambda r: r[1]):
        name = name if name.isalpha() and name.isupper() and not name.startswith("+") else "SIL"
        start, end = max(start, cursor), min(end, duration)
        if end - start <= 1e-6:
            continue
        if start - cursor > 1e-6:
            phones.append(Phone("SIL", cursor, start))
        phones.append(Phone(name, start, end))
        cursor = end
    if duration - cursor > 1e-6:
        phones.append(Phone("SIL", cursor, duration))
    merged: list[Phone] = []
    for phone in phones:
        if merged and phone.name == "SIL" and merged[-1].name == "SIL":
            merged[-1] = Phone("SIL", merged[-1].start, phone.end)
        else:
            merged.append(phone)
    return merged
