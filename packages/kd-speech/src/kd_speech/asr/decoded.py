"""Decode sets of recorded utterances with pocketsphinx once, and keep the results on disk.

Each utterance decodes (:class:`~kd_speech.asr.decode.PocketsphinxDecoder`) to its n-best list and the top
``lattice_paths`` distinct word sequences of its lattice (:func:`~kd_speech.asr.rescore.lattice_nbest`, with the
decoder's own trigram score of each), which is everything n-best and lattice rescoring need; the lattice's size
and the decode time are kept for reports. Pocketsphinx is the CMU Sphinx decoder (Huggins-Daines et al.,
"PocketSphinx: a free, real-time continuous speech recognition system for hand-held devices", ICASSP 2006).

A set is cached under ``$KD_DATA_HOME/asr-decodes/<digest>/decodes.json`` (``kd_core.datacache``: written
atomically, trusted only through a manifest) keyed by what determines the decodes: the pocketsphinx version,
the :class:`DecodeSettings` and the SHA-256 of every audio file, in order. The transcripts are not part of the
key (a corrected transcript does not decode again); they are attached when a set is read back.

Before anything decodes, every input is checked and a bad one is a ``KDError`` naming it: pocketsphinx missing
(naming the package), an unreadable or zero-length audio file, audio at another sample rate than 16 kHz when
resampling is off, an empty transcript.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from kd_core import datacache
from kd_core.errors import ConfigError

from kd_speech.asr.decode import Hypothesis, NBest, PocketsphinxDecoder, require_pocketsphinx
from kd_speech.asr.rescore import lattice_nbest
from kd_speech.asr.wer import normalize_text

__all__ = ["CACHE_NAME", "MODES", "DecodeSettings", "UtteranceDecode", "check_utterances", "decode_utterances",
           "decoded_dir"]

FORMAT = 1
CACHE_NAME = "asr-decodes"
#: The rescoring modes: the decoder's n-best list, or the top distinct paths of its lattice.
MODES = ("nbest", "lattice")


@dataclass(frozen=True)
class DecodeSettings:
    """How a set is decoded: the n-best list length, how many distinct lattice paths are kept, and whether audio
    at another rate is resampled to 16 kHz (else it is an error naming the file)."""

    nbest: int = 10
    lattice_paths: int = 50
    resample: bool = True

    def __post_init__(self) -> None:
        for name in ("nbest", "lattice_paths"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise ConfigError(name, "an integer in [1, 10000]", value)


@dataclass
class UtteranceDecode:
    """One decoded utterance: its id, reference transcript, n-best list, lattice paths (an :class:`NBest`, empty
    when pocketsphinx gave no lattice), lattice size (nodes, links) and timings (seconds)."""

    id: str
    reference: str
    nbest: NBest
    lattice: NBest
    lattice_nodes: int
    lattice_links: int
    decode_seconds: float
    audio_seconds: float

    def candidates(self, mode: str) -> NBest:
        """The hypotheses rescoring chooses among in ``mode`` (``"nbest"`` or ``"lattice"``); a mode with none
        falls back to the decoder's 1-best."""
        if mode not in MODES:
            raise ConfigError("mode", f"one of {MODES}", mode)
        chosen = self.nbest if mode == "nbest" else self.lattice
        if len(chosen):
            return chosen
        return NBest(self.nbest.hypotheses[:1]) if len(self.nbest) else NBest((Hypothesis("", None, None, 0.0),))

    @property
    def first_best(self) -> str:
        """The decoder's 1-best text ("" when it recognised nothing)."""
        return self.nbest.best.text if self.nbest.best is not None else ""


def _hypotheses(nbest: NBest) -> list[list[Any]]:
    return [[h.text, h.acoustic, h.lm, h.total] for h in nbest.hypotheses]


def _nbest(rows: list[list[Any]]) -> NBest:
    return NBest(tuple(Hypothesis(str(t), a, lm, total) for t, a, lm, total in rows))


def _utterance_id(utterance: Any) -> str:
    """The utterance's id (testdata), else its file name."""
    info = getattr(utterance, "info", {}) or {}
    return str(info.get("id") or Path(str(getattr(utterance, "path", ""))).name)


def check_utterances(utterances: Sequence[Any], settings: DecodeSettings, argument: str = "data") -> None:
    """Every check that comes before decoding: at least one utterance, each with a transcript that has a word
    and a readable, non-empty audio file (at 16 kHz unless ``settings.resample``); pocketsphinx importable."""
    from kd_speech.data.audio import SAMPLE_RATE, audio_info

    if not utterances:
        raise ConfigError(argument, "at least one utterance with a transcript", "none")
    for utterance in utterances:
        if not normalize_text(getattr(utterance, "transcript", "") or ""):
            where = (getattr(utterance, "info", {}) or {}).get("line")
            raise ConfigError(f"{utterance.path} transcript" + (f" (line {where})" if where else ""),
                              "a transcript with at least one word (WER needs a reference)",
                              getattr(utterance, "transcript", ""))
        audio_info(utterance.path, target=SAMPLE_RATE, resample=settings.resample)
    require_pocketsphinx()


def _key(utterances: Sequence[Any], settings: DecodeSettings) -> dict[str, Any]:
    try:
        version = metadata.version("pocketsphinx")
    except metadata.PackageNotFoundError:
        version = "?"
    return {"format": FORMAT, "pocketsphinx": version, "settings": asdict(settings),
            "audio": [datacache.file_sha256(u.path) for u in utterances]}


def decoded_dir(utterances: Sequence[Any], settings: DecodeSettings) -> tuple[Any, dict[str, Any]]:
    """Where a set's decodes are cached, and their key."""
    key = _key(utterances, settings)
    return datacache.data_home() / CACHE_NAME / datacache.digest(**key), key


def _current_progress() -> Any:
    """The innermost live progress display (a study's), if any: decoding adds its bar there rather than start
    a second live display."""
    from kd_core.progress import current_display

    return current_display()


def decode_utterances(utterances: Sequence[Any], settings: DecodeSettings | None = None, *, label: str = "decoding",
                      argument: str = "data", progress: Any = None) -> tuple[list[UtteranceDecode], str]:
    """Decode ``utterances`` (records with ``path``, ``transcript`` and optional ``info["id"]``), or read them
    from the cache; returns the decodes in order and a note saying which.

    Inputs are checked first (:func:`check_utterances`); ``progress``: a rich progress display to add a bar to
    (default: the innermost live one, else none).
    """
    from kd_speech.data.audio import read_audio

    settings = settings or DecodeSettings()
    check_utterances(utterances, settings, argument)
    directory, key = decoded_dir(utterances, settings)
    cached = datacache.load(directory, key)
    if cached is not None:
        rows = json.loads(cached["decodes.json"])
        note = f"read from the cache {directory}"
    else:
        decoder = PocketsphinxDecoder(nbest=settings.nbest, lattice=True)
        display = progress if progress is not None else _current_progress()
        task = display.add_task(label, total=len(utterances)) if display is not None else None
        rows = []
        began = time.perf_counter()
        for utterance in utterances:
            audio = read_audio(utterance.path, resample=settings.resample)
            decoded = decoder.decode(audio.numpy())
            lattice = decoded.lattice
            paths = (lattice_nbest(lattice, settings.lattice_paths, decoder.lm_logprob) if lattice is not None
                     else NBest(()))
            rows.append({"nbest": _hypotheses(decoded.nbest), "lattice": _hypotheses(paths),
                         "nodes": len(lattice.nodes) if lattice is not None else 0,
                         "links": len(lattice.links) if lattice is not None else 0,
                         "decode_seconds": decoded.decode_seconds, "audio_seconds": decoded.audio_seconds})
            if task is not None:
                display.advance(task)
        datacache.store(directory, key, {"decodes.json": json.dumps(rows).encode()})
        note = f"decoded in {time.perf_counter() - began:.0f} s, cached in {directory}"
    out = [UtteranceDecode(_utterance_id(u), u.transcript, _nbest(row["nbest"]), _nbest(row["lattice"]),
                           int(row["nodes"]), int(row["links"]), float(row["decode_seconds"]),
                           float(row["audio_seconds"])) for u, row in zip(utterances, rows, strict=True)]
    return out, note
