"""Phone -> viseme table and per-video-frame mouth tracks (openness, width) from aligned phones.

The table is written here from articulatory facts: bilabials (P, B, M) close the lips; labiodentals (F, V)
nearly close them; open vowels (AA, AE, AH, AW, AY) open the jaw wide; rounded vowels and W, R, SH narrow the
lips; spread vowels (IY, IH, EY) widen them. Openness is in ``[0, 1]`` (1 = jaw fully open), width is a
factor on the resting mouth width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kd_core.errors import ConfigError

from kd_generative.talking.align import Phone

__all__ = ["PHONE_VISEME", "VISEMES", "Viseme", "mouth_track", "viseme_of"]


@dataclass(frozen=True)
class Viseme:
    """A mouth shape: ``openness`` in [0, 1] and ``width`` relative to rest."""

    openness: float
    width: float


#: Named visemes.
VISEMES: dict[str, Viseme] = {
    "rest": Viseme(0.05, 1.0),
    "closed": Viseme(0.0, 0.95),
    "labiodental": Viseme(0.12, 1.05),
    "dental": Viseme(0.28, 1.05),
    "alveolar": Viseme(0.25, 1.05),
    "sibilant": Viseme(0.15, 1.15),
    "postalveolar": Viseme(0.3, 0.8),
    "velar": Viseme(0.38, 1.0),
    "r": Viseme(0.25, 0.78),
    "w": Viseme(0.15, 0.65),
    "open": Viseme(0.95, 1.05),
    "open-front": Viseme(0.8, 1.15),
    "mid": Viseme(0.6, 1.0),
    "mid-spread": Viseme(0.5, 1.2),
    "close-spread": Viseme(0.25, 1.3),
    "rounded-open": Viseme(0.7, 0.8),
    "rounded-mid": Viseme(0.5, 0.72),
    "rounded-close": Viseme(0.28, 0.65),
}

#: Every ARPAbet phone of pocketsphinx's en-us model (and SIL) -> its viseme name.
PHONE_VISEME: dict[str, str] = {
    "SIL": "rest",
    "P": "closed", "B": "closed", "M": "closed",
    "F": "labiodental", "V": "labiodental",
    "TH": "dental", "DH": "dental",
    "T": "alveolar", "D": "alveolar", "N": "alveolar", "L": "alveolar",
    "S": "sibilant", "Z": "sibilant",
    "SH": "postalveolar", "ZH": "postalveolar", "CH": "postalveolar", "JH": "postalveolar",
    "K": "velar", "G": "velar", "NG": "velar", "HH": "velar", "Y": "close-spread",
    "R": "r", "ER": "r", "W": "w",
    "AA": "open", "AW": "open", "AY": "open", "AE": "open-front", "AH": "mid",
    "EH": "mid-spread", "EY": "mid-spread", "IH": "close-spread", "IY": "close-spread",
    "AO": "rounded-open", "OY": "rounded-open", "OW": "rounded-mid", "UH": "rounded-mid", "UW": "rounded-close",
}


def viseme_of(phone: str) -> Viseme:
    """The viseme of an ARPAbet ``phone`` (stress digits ignored); unknown phones and fillers are ``rest``."""
    return VISEMES[PHONE_VISEME.get(phone.rstrip("012").upper(), "rest")]


def mouth_track(phones: Sequence[Phone], n_frames: int, fps: float = 25.0, smooth: float = 0.25) -> np.ndarray:
    """Per video frame ``(openness, width)``, shape ``(n_frames, 2)`` float32.

    Frame ``i`` covers ``[i / fps, (i + 1) / fps)``; its shape is the time-weighted mean of the visemes of the
    phones overlapping it (rest where no phone is). Then a 3-tap coarticulation filter gives each neighbour
    weight ``smooth`` (0 disables it; ends are clamped).
    """
    if n_frames < 0 or fps <= 0 or not 0 <= smooth < 0.5:
        raise ConfigError("mouth_track", "n_frames >= 0, fps > 0, 0 <= smooth < 0.5", (n_frames, fps, smooth))
    rest = VISEMES["rest"]
    track = np.tile(np.array([rest.openness, rest.width], np.float64), (n_frames, 1))
    covered = np.zeros(n_frames)
    acc = np.zeros((n_frames, 2))
    for phone in phones:
        shape = viseme_of(phone.name)
        first, last = int(np.floor(phone.start * fps)), int(np.ceil(phone.end * fps))
        for i in range(max(first, 0), min(last, n_frames)):
            overlap = min(phone.end, (i + 1) / fps) - max(phone.start, i / fps)
            if overlap > 0:
                acc[i] += overlap * np.array([shape.openness, shape.width])
                covered[i] += overlap
    frame = 1.0 / fps
    acc += np.clip(frame - covered, 0, None)[:, None] * track  # uncovered time rests
    track = acc / frame
    if smooth > 0 and n_frames > 1:
        padded = np.concatenate([track[:1], track, track[-1:]])
        track = smooth * padded[:-2] + (1 - 2 * smooth) * padded[1:-1] + smooth * padded[2:]
    return track.astype(np.float32)
