"""Pocketsphinx decoding: the missing-package error, audio checks, and one real LibriVox utterance from
Debian's pocketsphinx-testdata (n-best > 1, a lattice, WER < 0.6; skipped only when that package is absent)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, KDError
from kd_speech.asr.decode import PocketsphinxDecoder, prepare_audio, require_pocketsphinx
from kd_speech.asr.rescore import RescoreWeights, lattice_nbest, rescore_nbest
from kd_speech.asr.wer import word_error_rate

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
UTTERANCE = "sense_and_sensibility_01_austen_64kb-0880"


def test_missing_pocketsphinx_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes `import pocketsphinx` raise ImportError
    with pytest.raises(KDError, match="pip install pocketsphinx") as info:
        PocketsphinxDecoder()
    assert info.value.argument == "pocketsphinx"
    with pytest.raises(KDError, match="pip install pocketsphinx"):
        require_pocketsphinx()


def test_prepare_audio_converts_and_checks() -> None:
    floats = np.array([0.0, 0.5, -1.0, 2.0], dtype=np.float32)
    assert prepare_audio(floats, 16_000).tolist() == [0, 16384, -32767, 32767]
    ints = np.array([1, -2, 3], dtype=np.int16)
    assert prepare_audio(torch.from_numpy(ints).unsqueeze(0), 16_000).tolist() == [1, -2, 3]
    with pytest.raises(ConfigError, match="16000 Hz") as info:
        prepare_audio(floats, 8_000)
    assert "resample=True" in str(info.value)
    tone = np.sin(np.arange(8_000) * 0.1).astype(np.float32) * 0.5
    assert prepare_audio(tone, 8_000, resample=True).shape == (16_000,)
    with pytest.raises(ConfigError, match="mono"):
        prepare_audio(np.zeros((2, 100), dtype=np.float32), 16_000)
    with pytest.raises(ConfigError, match="zero-length"):
        prepare_audio(np.zeros(0, dtype=np.int16), 16_000)
    with pytest.raises(ConfigError, match="int16"):
        prepare_audio(np.zeros(10, dtype=np.int32), 16_000)
    with pytest.raises(ConfigError, match="finite"):
        prepare_audio(np.array([np.nan], dtype=np.float32), 16_000)


def _reference(utterance: str) -> str:
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        if line.rstrip().endswith(f"({utterance})"):
            return line.rsplit("(", 1)[0].replace("<s>", "").replace("</s>", "").strip()
    raise AssertionError(f"{utterance} is not in the transcription file")


@pytest.mark.skipif(not (LIBRIVOX / f"{UTTERANCE}.wav").exists(), reason="Debian's pocketsphinx-testdata is absent")
def test_real_librivox_utterance_decodes_to_nbest_and_lattice() -> None:
    import soundfile

    audio, rate = soundfile.read(LIBRIVOX / f"{UTTERANCE}.wav", dtype="float32")
    began = time.perf_counter()
    decoder = PocketsphinxDecoder(nbest=5)
    loaded = time.perf_counter() - began
    decoded = decoder.decode(audio, rate)
    reference = _reference(UTTERANCE)
    print(f"\npocketsphinx: model load {loaded:.2f} s, decode {decoded.decode_seconds:.2f} s for "
          f"{decoded.audio_seconds:.2f} s of audio (RTF {decoded.real_time_factor:.2f})")

    nbest, lattice = decoded.nbest, decoded.lattice
    assert len(nbest) > 1 and len(set(nbest.texts)) == len(nbest)
    assert all(h.acoustic is not None and h.acoustic < 0 and h.lm is not None and h.lm < 0 for h in nbest)
    assert word_error_rate([reference], [nbest.best.text]) < 0.6

    assert lattice is not None and len(lattice.nodes) > 10 and len(lattice.links) > 10
    assert lattice.lm_scale == pytest.approx(decoder.lm_weight)
    paths = lattice_nbest(lattice, n=5, decoder_lm=decoder.lm_logprob)
    assert len(paths) > 1 and word_error_rate([reference], [paths[0].text]) < 0.6
    # rescoring with only the decoder's own trigram at its own weights keeps a sensible answer
    rescored = rescore_nbest(nbest, [h.lm for h in nbest],
                             RescoreWeights(decoder.lm_weight, 1.0, decoder.word_penalty))
    assert word_error_rate([reference], [rescored.text]) < 0.6
    # the same audio again (as int16) decodes to the same lists: no state carried between utterances
    again = decoder.decode((audio * 32767).round().astype(np.int16), rate)
    assert again.nbest == nbest and len(again.lattice.links) == len(lattice.links)
