"""Decoded sets (kd_speech.asr.decoded): inputs checked before decoding, each bad one named; one real LibriVox
utterance decoded once and then read back from the cache (skipped only when pocketsphinx-testdata is absent)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from kd_core.errors import ConfigError, KDError
from kd_speech.asr import decoded as decoded_module
from kd_speech.asr.decoded import DecodeSettings, check_utterances, decode_utterances, decoded_dir
from kd_speech.data import Utterance, read_testdata

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _wav(path: Path, rate: int = 16_000, samples: int = 1600) -> Path:
    soundfile.write(path, (0.2 * np.sin(np.arange(samples) * 0.05)).astype(np.float32), rate)
    return path


def test_every_input_is_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = Utterance(_wav(tmp_path / "good.wav"), "turn the lights on")
    settings = DecodeSettings()
    with pytest.raises(ConfigError, match="at least one utterance"):
        check_utterances([], settings)
    with pytest.raises(ConfigError, match=r"empty\.wav transcript") as info:
        check_utterances([good, Utterance(_wav(tmp_path / "empty.wav"), " !? ")], settings)
    assert "at least one word" in str(info.value)
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"zero\.wav"):
        check_utterances([Utterance(tmp_path / "zero.wav", "a b")], settings)
    (tmp_path / "garbage.wav").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"garbage\.wav.*readable audio"):
        check_utterances([Utterance(tmp_path / "garbage.wav", "a b")], settings)
    slow = Utterance(_wav(tmp_path / "slow.wav", rate=8_000), "a b")
    check_utterances([slow], settings)  # resampled by default
    with pytest.raises(ConfigError, match=r"slow.wav.*16000 Hz.*8000 Hz"):
        check_utterances([slow], DecodeSettings(resample=False))
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # `import pocketsphinx` raises ImportError
    with pytest.raises(KDError, match="pip install pocketsphinx") as missing:
        decode_utterances([good], settings)
    assert missing.value.argument == "pocketsphinx"
    with pytest.raises(ConfigError, match="lattice_paths"):
        DecodeSettings(lattice_paths=0)


def test_the_cache_key_follows_audio_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    a = Utterance(_wav(tmp_path / "a.wav"), "a b")
    b = Utterance(_wav(tmp_path / "b.wav", samples=1700), "a b")
    where = decoded_dir([a], DecodeSettings())[0]
    assert where.parent == tmp_path / "home" / "asr-decodes"
    assert decoded_dir([Utterance(a.path, "another transcript")], DecodeSettings())[0] == where  # not in the key
    assert decoded_dir([b], DecodeSettings())[0] != where
    assert decoded_dir([a], DecodeSettings(nbest=5))[0] != where
    assert decoded_dir([a, b], DecodeSettings())[0] != decoded_dir([b, a], DecodeSettings())[0]


@pytest.mark.skipif(not LIBRIVOX.is_dir(), reason="Debian's pocketsphinx-testdata is absent")
def test_a_real_utterance_decodes_once_then_comes_from_the_cache(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    utterance = next(u for u in read_testdata("librivox") if u.info["id"].endswith("0880"))
    settings = DecodeSettings(nbest=3, lattice_paths=5)
    (first,), note = decode_utterances([utterance], settings)
    assert note.startswith("decoded") and first.id == utterance.info["id"]
    assert 1 < len(first.nbest) <= 3 and 1 < len(first.lattice) <= 5
    assert len(set(first.lattice.texts)) == len(first.lattice) and first.lattice_links > 10
    assert all(h.acoustic is not None and h.acoustic < 0 and h.lm is not None for h in first.lattice.hypotheses)
    assert first.first_best == first.nbest.best.text and first.audio_seconds == pytest.approx(2.99, abs=0.05)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(decoded_module, "PocketsphinxDecoder", no_decoding)
    (again,), note = decode_utterances([Utterance(utterance.path, "a corrected transcript", info=utterance.info)],
                                       settings)
    assert note.startswith("read from the cache")
    assert again.nbest == first.nbest and again.lattice == first.lattice
    assert again.reference == "a corrected transcript"  # transcripts are attached on reading, not cached
