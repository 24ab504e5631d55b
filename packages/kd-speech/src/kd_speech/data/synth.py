"""Speech synthesis with the Debian synthesizers espeak-ng and flite, as 16 kHz mono float32 tensors.

- espeak-ng (``apt-get install espeak-ng``): ``espeak-ng -v ACCENT+VARIANT -s SPEED -p PITCH --stdout TEXT``;
  8 English accents × 12 voice variants (m1–m7, f1–f5) here, each at any speed (words per minute) and pitch
  (0–99). Output is 22,050 Hz, resampled to 16 kHz.
- flite (``apt-get install flite``): ``flite -voice V --setf duration_stretch=S -t TEXT -o FILE``; its four
  English voices kal16, slt, rms and awb, each at any duration stretch (above 1 is slower). Output is 16 kHz.

Both are deterministic: the same text and settings give the same samples. A synthesizer that is not on
``PATH`` is a ``DataError`` naming the Debian package to install.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from kd_core.errors import ConfigError, DataError

from kd_speech.data.audio import SAMPLE_RATE, decode_audio

__all__ = ["ESPEAK_ACCENTS", "ESPEAK_VARIANTS", "FLITE_VOICES", "SYNTHESIZERS", "Voice", "require_synthesizer",
           "synthesize", "synthesizer_version"]

ESPEAK_ACCENTS: tuple[str, ...] = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
"""espeak-ng's English accents. ``"en"`` is British English: espeak-ng 1.51 ignores variants on ``"en-gb"``."""

ESPEAK_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
"""espeak-ng voice variants, appended to an accent as ``ACCENT+VARIANT``."""

FLITE_VOICES: tuple[str, ...] = ("kal16", "slt", "rms", "awb")
"""flite's English voices (kal16: US male diphone; slt, rms, awb: CMU ARCTIC US female, US male, Scottish male)."""

SYNTHESIZERS: dict[str, tuple[str, str]] = {"espeak": ("espeak-ng", "espeak-ng"), "flite": ("flite", "flite")}
"""Synthesizer name -> (executable, Debian package)."""

_TIMEOUT = 60.0


@dataclass(frozen=True)
class Voice:
    """One synthesizer setting. ``name``: ``ACCENT+VARIANT`` for espeak, a flite voice for flite.

    ``speed`` (words per minute, 80–450) and ``pitch`` (0–99) apply to espeak; ``stretch`` (duration
    stretch, 0.5–2) to flite.
    """

    synthesizer: str
    name: str
    speed: int = 160
    pitch: int = 50
    stretch: float = 1.0

    def __post_init__(self) -> None:
        if self.synthesizer == "espeak":
            accent, _, variant = self.name.partition("+")
            if accent not in ESPEAK_ACCENTS or (variant and variant not in ESPEAK_VARIANTS):
                raise ConfigError("voice", f"ACCENT[+VARIANT] with an accent of {ESPEAK_ACCENTS} and a variant of "
                                  f"{ESPEAK_VARIANTS}", self.name)
            if not 80 <= self.speed <= 450 or not 0 <= self.pitch <= 99:
                raise ConfigError("voice", "espeak speed in [80, 450] and pitch in [0, 99]",
                                  f"speed {self.speed}, pitch {self.pitch}")
        elif self.synthesizer == "flite":
            if self.name not in FLITE_VOICES:
                raise ConfigError("voice", f"a flite voice of {FLITE_VOICES}", self.name)
            if not 0.5 <= self.stretch <= 2.0:
                raise ConfigError("voice", "a flite duration stretch in [0.5, 2]", self.stretch)
        else:
            raise ConfigError("synthesizer", f"one of {tuple(SYNTHESIZERS)}", self.synthesizer)

    @property
    def identity(self) -> str:
        """``"espeak:en-us+f3"`` or ``"flite:slt"``: who speaks, whatever the speed, pitch or stretch."""
        return f"{self.synthesizer}:{self.name}"


def require_synthesizer(synthesizer: str) -> str:
    """The path of a synthesizer's executable; when it is not on ``PATH``, a ``DataError`` naming the package."""
    if synthesizer not in SYNTHESIZERS:
        raise ConfigError("synthesizer", f"one of {tuple(SYNTHESIZERS)}", synthesizer)
    executable, package = SYNTHESIZERS[synthesizer]
    path = shutil.which(executable)
    if path is None:
        raise DataError(synthesizer, f"the {executable} executable on PATH", "not found",
                        hint=f"install it with `apt-get install {package}`")
    return path


def synthesizer_version(synthesizer: str) -> str:
    """The first line of a synthesizer's version output (recorded with each built set)."""
    path = require_synthesizer(synthesizer)
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return next((line for line in lines if "version" in line.lower() or "text-to-speech" in line.lower()),
                lines[0] if lines else "unknown")


def _run(command: list[str], voice: Voice, text: str) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise DataError(voice.synthesizer, f"speech within {_TIMEOUT:.0f} s", f"a timeout on {text!r}") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(voice.synthesizer, f"speech for voice {voice.name!r}", f"exit status {result.returncode}",
                        hint=message[0] if message else "")
    return result.stdout


def synthesize(text: str, voice: Voice, target: int = SAMPLE_RATE) -> torch.Tensor:
    """``text`` spoken by ``voice``: a 1-D float32 tensor at ``target`` Hz (16 kHz by default)."""
    text = " ".join(str(text).split())
    if not text:
        raise ConfigError("text", "a non-empty text to speak", text)
    path = require_synthesizer(voice.synthesizer)
    if voice.synthesizer == "espeak":
        # A leading "-" would read as an option; espeak-ng speaks the text the same without it.
        data = _run([path, "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "--stdout",
                     text.lstrip("-") or text], voice, text)
    else:
        with tempfile.TemporaryDirectory(prefix="kd-flite-") as folder:
            output = Path(folder) / "speech.wav"
            _run([path, "-voice", voice.name, "--setf", f"duration_stretch={voice.stretch:g}", "-t", text,
                  "-o", str(output)], voice, text)
            data = output.read_bytes() if output.is_file() else b""
    if len(data) <= 44:
        raise DataError(voice.synthesizer, f"speech for voice {voice.name!r}", f"no audio for {text!r}")
    return decode_audio(data, name=f"{voice.identity} output", target=target)
