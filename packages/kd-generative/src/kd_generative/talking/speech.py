"""Speech for the talking-face data: a fixed list of short English sentences spoken by Debian's ``espeak-ng``
and ``flite`` through plain subprocess calls, returned as 16 kHz mono float32.

Both synthesizers are deterministic: the same text, voice and tool version give the same samples.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import numpy as np
from kd_core.errors import ConfigError, DataError

__all__ = ["SAMPLE_RATE", "SENTENCES", "VOICES", "Voice", "normalise_text", "synthesize", "tool_versions"]

#: The sample rate of every waveform here (Wav2Lip's audio rate).
SAMPLE_RATE = 16000

#: Short sentences (every word in pocketsphinx's CMU dictionary) chosen to mix open, rounded and spread
#: vowels with bilabial closures, so that the mouth moves a lot and in varied ways.
SENTENCES: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "we may meet by the old bridge",
    "open the window and wave to me",
    "she bought a blue balloon",
    "my father made pea soup",
    "who will pay for the boat",
    "bob ate a big apple at noon",
    "please move the map away",
    "the moon was bright above the bay",
    "you should open both boxes",
    "a warm room is a happy home",
    "mom put the book by the phone",
    "all the cows wander about",
    "big ships pass by the bay",
    "we both saw a wide blue lake",
    "do not wake the baby",
    "maybe we can walk home now",
    "the farmer fed his sheep",
    "i hope you enjoy the show",
    "many people eat beef on monday",
    "the bus stops by our house",
    "paul bought a pair of boots",
    "put the apples in a bowl",
    "we often swim in the pool",
)


@dataclass(frozen=True)
class Voice:
    """A synthesizer (``"flite"`` or ``"espeak-ng"``) and one of its voices."""

    tool: str
    name: str

    @property
    def key(self) -> str:
        """A short name used in manifests: ``flite/slt``, ``espeak-ng/en-us+f3``."""
        return f"{self.tool}/{self.name}"


#: Voices that pocketsphinx's en-us model force-aligns reliably (espeak-ng's default male voices often lose
#: the last words; those utterances would be rejected anyway).
VOICES: tuple[Voice, ...] = (
    Voice("flite", "slt"), Voice("flite", "rms"), Voice("flite", "awb"), Voice("flite", "kal16"),
    Voice("espeak-ng", "en-us+f2"), Voice("espeak-ng", "en-us+f3"), Voice("espeak-ng", "en-us+klatt"),
)

_DEBIAN = {"flite": "flite", "espeak-ng": "espeak-ng"}


def normalise_text(text: str) -> str:
    """Lower case, letters and apostrophes only, single spaces; :class:`ConfigError` if nothing is left."""
    if not isinstance(text, str):
        raise ConfigError("text", "a sentence (str)", text)
    words = re.sub(r"[^a-z' ]+", " ", text.lower()).split()
    if not words:
        raise ConfigError("text", "a sentence with at least one word", text)
    return " ".join(words)


def _tool(tool: str) -> str:
    if tool not in _DEBIAN:
        raise ConfigError("voice.tool", "'flite' or 'espeak-ng'", tool)
    path = shutil.which(tool)
    if path is None:
        raise DataError("voice.tool", f"the {tool} program on PATH", "not found",
                        hint=f"apt-get install {_DEBIAN[tool]}")
    return path


@cache
def tool_versions(tools: tuple[str, ...] = ("flite", "espeak-ng")) -> dict[str, str]:
    """Each synthesizer's version line (part of every cache key: a new version may change the samples)."""
    versions = {}
    for tool in tools:
        out = subprocess.run([_tool(tool), "--version"], capture_output=True, text=True, check=False)
        lines = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        versions[tool] = next((line for line in lines if "version" in line.lower() or "ng" in line), "?")
    return versions


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return samples
    import torch
    import torchaudio.functional as taf

    return taf.resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """``text`` spoken by ``voice``: float32 mono at :data:`SAMPLE_RATE`, peak-normalised to 0.7.

    A missing program is a :class:`DataError` naming the Debian package to install.
    """
    import soundfile

    text = normalise_text(text)
    program = _tool(voice.tool)
    if voice.tool == "flite":
        command = [program, "-voice", voice.name, "-t", text, "-o", "/dev/stdout"]
    else:
        command = [program, "-v", voice.name, "-s", "150", "--stdout", text]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise DataError("voice", f"{voice.key} to synthesize {text!r}",
                        result.stderr.decode(errors="replace").strip()[:200] or f"exit {result.returncode}")
    samples, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    samples = _resample(np.ascontiguousarray(samples, dtype=np.float32), int(rate))
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-4:
        raise DataError("voice", f"audible speech from {voice.key}", f"silence for {text!r}")
    return (samples * (0.7 / peak)).astype(np.float32)
