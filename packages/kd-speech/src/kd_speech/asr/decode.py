"""Decode 16 kHz mono audio with pocketsphinx into an n-best list and a word lattice.

Pocketsphinx (PyPI ``pocketsphinx``, its bundled en-us acoustic model, trigram ``en-us.lm.bin`` and
cmudict) reports one score per n-best entry (``Hypothesis.score`` is a probability-like total, with no
acoustic/LM split, and its scale differs between ``Decoder.hyp()`` and ``Decoder.nbest()``); ``seg()``
splits scores for the 1-best only. So each hypothesis here gets:

- ``acoustic``: the acoustic log-likelihood (natural log) of the best lattice path with exactly its words,
  from the ``a=`` scores of the HTK lattice pocketsphinx writes (``None`` if the lattice holds no such path);
- ``lm``: the natural-log probability of its words (with ``<s>``/``</s>``) under the decoder's own trigram
  model, through ``NGramModel.prob`` (queries of at most three words);
- ``total``: ``ln(Hypothesis.score)``, the decoder's own number, kept for reference.

The first hypothesis is the decoder's 1-best (``hyp()``), followed by the distinct ``nbest()`` entries.
The lattice's link LM scores are filled with the decoder's bigram probabilities and its ``lm_scale`` and
``word_penalty`` set to the decoder's ``lw`` and ``ln(wip)``, so ``lattice.nbest_paths`` ranks paths
roughly as the decoder does.
"""

from __future__ import annotations

import importlib
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError, KDError

from kd_speech.asr.lattice import Lattice, read_htk_slf
from kd_speech.asr.wer import normalize_words

SAMPLE_RATE = 16_000
#: log-probability given to a word the decoder's n-gram model does not know (ln 1e-10)
UNKNOWN_WORD_LOGPROB = math.log(1e-10)
_LOG_ZERO = -536_870_912  # pocketsphinx's logmath zero


def require_pocketsphinx() -> ModuleType:
    """Import pocketsphinx, or raise ``KDError`` saying ``pip install pocketsphinx``."""
    try:
        return importlib.import_module("pocketsphinx")
    except ImportError as err:
        raise KDError("pocketsphinx", "the pocketsphinx package installed (its bundled en-us model decodes)",
                      f"not importable ({err})", hint="install it with `pip install pocketsphinx`") from None


@dataclass(frozen=True)
class Hypothesis:
    """One recognition hypothesis: text, acoustic and LM log scores (natural log, ``None`` if unknown), total."""

    text: str
    acoustic: float | None = None
    lm: float | None = None
    total: float | None = None

    @property
    def words(self) -> list[str]:
        """The words of the text."""
        return self.text.split()


@dataclass(frozen=True)
class NBest:
    """An n-best list, best (the decoder's 1-best) first."""

    hypotheses: tuple[Hypothesis, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hypotheses", tuple(self.hypotheses))

    def __len__(self) -> int:
        return len(self.hypotheses)

    def __getitem__(self, index: int) -> Hypothesis:
        return self.hypotheses[index]

    @property
    def best(self) -> Hypothesis | None:
        """The first hypothesis, ``None`` for an empty list."""
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def texts(self) -> list[str]:
        """The hypothesis texts in order."""
        return [h.text for h in self.hypotheses]


@dataclass
class Decoded:
    """What one utterance decodes to: the n-best list, the lattice (``None`` if none was built), timings."""

    nbest: NBest
    lattice: Lattice | None
    decode_seconds: float
    audio_seconds: float

    @property
    def real_time_factor(self) -> float:
        """Decode time over audio duration."""
        return self.decode_seconds / self.audio_seconds


def prepare_audio(audio: Any, sample_rate: int, resample: bool = False, argument: str = "audio") -> np.ndarray:
    """``audio`` (numpy or torch; int16, or float in [-1, 1]; mono) as 16 kHz int16 samples.

    Another sample rate is a ``ConfigError`` unless ``resample`` (torchaudio's ``functional.resample``).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ConfigError("sample_rate", "a positive integer (Hz)", sample_rate)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if not isinstance(audio, np.ndarray):
        raise ConfigError(argument, "a numpy array or torch tensor of samples", type(audio).__name__)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise ConfigError(argument, "mono audio: shape (samples,), (1, samples) or (samples, 1)", audio.shape,
                          hint="mix the channels down first, e.g. audio.mean(axis=0)")
    if audio.size == 0:
        raise ConfigError(argument, "at least one sample", "zero-length audio")
    if audio.dtype == np.int16:
        samples = audio.astype(np.float32) / 32768.0 if sample_rate != SAMPLE_RATE else audio
    elif np.issubdtype(audio.dtype, np.floating):
        if not np.isfinite(audio).all():
            raise ConfigError(argument, "finite samples", "NaN or infinite values")
        samples = audio.astype(np.float32)
    else:
        raise ConfigError(argument, "int16 samples or floats in [-1, 1]", str(audio.dtype))
    if sample_rate != SAMPLE_RATE:
        if not resample:
            raise ConfigError("sample_rate", f"{SAMPLE_RATE} Hz (the en-us acoustic model's rate)", sample_rate,
                              hint="resample the audio first, or pass resample=True")
        import torchaudio.functional

        samples = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(samples)), int(sample_rate),
                                                 SAMPLE_RATE).numpy()
    if samples.dtype == np.int16:
        return np.ascontiguousarray(samples)
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


@dataclass
class PocketsphinxDecoder:
    """A pocketsphinx decoder (bundled en-us model unless ``config`` says otherwise) giving n-best and lattice.

    ``nbest``: how many hypotheses to keep; ``config``: extra ``pocketsphinx.Decoder`` keyword arguments;
    ``reset_cmn``: start every utterance from the model's initial cepstral mean and noise statistics, so that
    a result does not depend on which utterances were decoded before (pocketsphinx otherwise carries them
    over, and the same audio decodes to a different lattice the second time).
    """

    nbest: int = 10
    lattice: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    reset_cmn: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.nbest, bool) or not isinstance(self.nbest, int) or self.nbest < 1:
            raise ConfigError("nbest", "an integer >= 1", self.nbest)
        pocketsphinx = require_pocketsphinx()
        options = {"samprate": SAMPLE_RATE, "loglevel": "FATAL", **self.config}
        try:
            self._decoder = pocketsphinx.Decoder(**options)
        except (ValueError, RuntimeError, KeyError) as err:
            raise ConfigError("config", "pocketsphinx Decoder options that load", options, hint=str(err)) from None
        self._initial_cmn = self._decoder.get_cmn()
        self._ngram = self._decoder.get_lm()
        self._ln_base = math.log(float(self._decoder.config["logbase"]))
        self.lm_weight = float(self._decoder.config["lw"])
        self.word_penalty = math.log(float(self._decoder.config["wip"]))

    # -- the decoder's n-gram model --------------------------------------------------------------------

    def _ngram_logprob(self, word: str, history: Sequence[str]) -> float:
        """ln P(word | history) under the decoder's n-gram; ``history`` most recent first, at most two words.

        Queries stay at three words: en-us.lm.bin is a trigram, and the binding's ``prob`` sizes its C array
        of word pointers in bytes (``malloc(len(words))``), which three pointers still fit (glibc's 24-byte
        minimum chunk) and longer queries would overrun.
        """
        if self._ngram is None:
            return 0.0
        raw = self._ngram.prob([word, *history[:2]])
        return UNKNOWN_WORD_LOGPROB if raw <= _LOG_ZERO else raw * self._ln_base

    def bigram(self, context: str | None, word: str) -> float:
        """ln P(word | context) under the decoder's n-gram (a unigram when ``context`` is ``None``)."""
        return self._ngram_logprob(word, [] if context is None else [context])

    def lm_logprob(self, words: str | Sequence[str]) -> float:
        """ln P(<s> words </s>) under the decoder's trigram model."""
        tokens = ["<s>", *(normalize_words(words) if isinstance(words, str) else words), "</s>"]
        return math.fsum(self._ngram_logprob(tokens[i], tokens[max(0, i - 2): i][::-1])
                         for i in range(1, len(tokens)))

    # -- decoding --------------------------------------------------------------------------------------

    def decode(self, audio: Any, sample_rate: int = SAMPLE_RATE, resample: bool = False) -> Decoded:
        """Decode one utterance into an :class:`NBest` list and a :class:`Lattice`."""
        samples = prepare_audio(audio, sample_rate, resample)
        began = time.perf_counter()
        if self.reset_cmn:
            self._reset()
        self._decoder.start_utt()
        self._decoder.process_raw(samples.tobytes(), full_utt=True)
        self._decoder.end_utt()
        decode_seconds = time.perf_counter() - began
        lattice = self._lattice() if self.lattice else None
        return Decoded(self._nbest(lattice), lattice, decode_seconds, samples.size / SAMPLE_RATE)

    def _reset(self) -> None:
        """Back to the initial cepstral mean and noise statistics (``start_stream`` is deprecated, not gone)."""
        self._decoder.set_cmn(self._initial_cmn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._decoder.start_stream()

    def _lattice(self) -> Lattice | None:
        try:
            dag = self._decoder.get_lattice()
        except (RuntimeError, ValueError):
            return None
        if dag is None:
            return None
        with tempfile.TemporaryDirectory(prefix="kd-speech-lattice-") as folder:
            path = Path(folder) / "lattice.slf"
            dag.write_htk(str(path))
            lattice = read_htk_slf(path)
        lattice = lattice.with_link_lm(self.bigram)
        lattice.lm_scale, lattice.word_penalty = self.lm_weight, self.word_penalty
        return lattice

    def _nbest(self, lattice: Lattice | None) -> NBest:
        scored: list[tuple[str, float | None]] = []
        best = self._decoder.hyp()
        if best is not None:
            scored.append((best.hypstr, best.score))
        try:
            for _, entry in zip(range(4 * self.nbest), self._decoder.nbest()):
                scored.append((entry.hypstr, entry.score))
        except (RuntimeError, ValueError):
            pass
        hypotheses: list[Hypothesis] = []
        seen: set[str] = set()
        for raw_text, score in scored:
            text = " ".join(raw_text.split())
            if text in seen or (not text and hypotheses):
                continue
            seen.add(text)
            path = lattice.align(text.split()) if lattice is not None else None
            total = math.log(score) if score is not None and score > 0 else None
            hypotheses.append(Hypothesis(text, path.acoustic if path is not None else None,
                                         self.lm_logprob(text.split()), total))
            if len(hypotheses) == self.nbest:
                break
        return NBest(tuple(hypotheses))
