"""The speech corpus: every (sentence, voice) synthesized, force-aligned and turned into a mel spectrogram,
cached under ``$KD_DATA_HOME/talking-speech/<digest>/`` with ``kd_core.datacache`` (``mels.npy`` + ``speech.json``
+ the manifest). Utterances pocketsphinx cannot align are listed as rejected, not kept.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kd_core import datacache
from kd_core.errors import ConfigError, DataError

from kd_generative.talking.align import AlignmentError, Phone, align_phones, aligner_version
from kd_generative.talking.audio import mel_spectrogram
from kd_generative.talking.speech import SENTENCES, VOICES, Voice, synthesize, tool_versions

__all__ = ["FORMAT", "SpeechCorpus", "Utterance", "build_corpus", "sentence_split"]

FORMAT = 1


@dataclass(frozen=True)
class Utterance:
    """One aligned utterance: sentence index and text, voice key, duration (s), phones and its mel ``(80, M)``."""

    sentence: int
    text: str
    voice: str
    duration: float
    phones: tuple[Phone, ...]
    mel: np.ndarray


@dataclass(frozen=True)
class SpeechCorpus:
    """The aligned utterances, those rejected (with why), the cache key and how long the build took."""

    utterances: tuple[Utterance, ...]
    rejected: tuple[dict, ...]
    key: dict
    note: str


def sentence_split(index: int) -> str:
    """``"test"`` for sentences 0, 6, 12, ...; ``"val"`` for 1, 7, 13, ...; else ``"train"``."""
    return {0: "test", 1: "val"}.get(index % 6, "train")


def _voices(voices: Sequence[str] | None) -> list[Voice]:
    known = {v.key: v for v in VOICES}
    if voices is None:
        return list(VOICES)
    if isinstance(voices, str) or not voices:
        raise ConfigError("voices", "a non-empty list of voice keys such as 'flite/slt'", voices)
    picked = []
    for key in voices:
        tool, _, name = str(key).partition("/")
        if key in known:
            picked.append(known[key])
        elif tool in ("flite", "espeak-ng") and name:
            picked.append(Voice(tool, name))
        else:
            raise ConfigError("voices", "keys 'flite/<voice>' or 'espeak-ng/<voice>'", key)
    return picked


def _sentences(sentences: Sequence[int] | None) -> list[int]:
    if sentences is None:
        return list(range(len(SENTENCES)))
    bad = [s for s in sentences if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < len(SENTENCES)]
    if bad or not sentences:
        raise ConfigError("sentences", f"a non-empty list of indices into SENTENCES (0..{len(SENTENCES) - 1})",
                          bad or sentences)
    return sorted(set(sentences))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def build_corpus(sentences: Sequence[int] | None = None, voices: Sequence[str] | None = None,
                 reuse: bool = True) -> SpeechCorpus:
    """Synthesize, align and mel every (sentence, voice), or load them from the cache when the key matches.

    The key holds the texts, the voices, the synthesizers' and pocketsphinx's versions and :data:`FORMAT`.
    """
    indices, picked = _sentences(sentences), _voices(voices)
    tools = tuple(sorted({v.tool for v in picked}))
    key = {"format": FORMAT, "sentences": [SENTENCES[i] for i in indices], "sentence_ids": indices,
           "voices": [v.key for v in picked], "tools": tool_versions(tools), "pocketsphinx": aligner_version()}
    directory = datacache.data_home() / "talking-speech" / datacache.digest(**key)
    files = datacache.load(directory, key) if reuse else None
    started = time.perf_counter()
    if files is None:
        mels, records, rejected = [], [], []
        for i in indices:
            for voice in picked:
                samples = synthesize(SENTENCES[i], voice)
                try:
                    phones = align_phones(samples, SENTENCES[i])
                except AlignmentError as error:
                    rejected.append({"sentence": i, "voice": voice.key, "why": str(error)})
                    continue
                mel = mel_spectrogram(samples)
                records.append({"sentence": i, "voice": voice.key, "duration": len(samples) / 16000,
                                "mel_frames": int(mel.shape[1]),
                                "phones": [[p.name, p.start, p.end] for p in phones]})
                mels.append(mel)
        if not records:
            raise DataError("corpus", "at least one utterance pocketsphinx can align", rejected)
        meta = {"utterances": records, "rejected": rejected}
        files = {"mels.npy": _npy(np.concatenate(mels, axis=1)),
                 "speech.json": json.dumps(meta, indent=1, sort_keys=True).encode()}
        datacache.store(directory, key, files)
        note = f"built in {time.perf_counter() - started:.1f} s, cached at {directory}"
    else:
        note = f"reused from {directory}"
    meta = json.loads(files["speech.json"])
    all_mels = np.load(io.BytesIO(files["mels.npy"]), allow_pickle=False)
    utterances, offset = [], 0
    for record in meta["utterances"]:
        n = record["mel_frames"]
        phones = tuple(Phone(name, float(a), float(b)) for name, a, b in record["phones"])
        utterances.append(Utterance(record["sentence"], SENTENCES[record["sentence"]], record["voice"],
                                    float(record["duration"]), phones, all_mels[:, offset:offset + n]))
        offset += n
    return SpeechCorpus(tuple(utterances), tuple(meta["rejected"]), key, note)
