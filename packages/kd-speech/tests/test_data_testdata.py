"""Real recordings from Debian's pocketsphinx-testdata: transcripts, 16 kHz audio, and a missing package."""

from __future__ import annotations

from pathlib import Path

import pytest
from kd_core.errors import DataError
from kd_speech.data.audio import read_audio
from kd_speech.data.testdata import TESTDATA_DIR, read_testdata

needs_testdata = pytest.mark.skipif(not (TESTDATA_DIR / "librivox" / "transcription").is_file(),
                                    reason="pocketsphinx-testdata is not installed (apt-get install "
                                    "pocketsphinx-testdata)")


@needs_testdata
def test_librivox_and_cards_come_with_their_real_transcripts() -> None:
    librivox = read_testdata("librivox")
    cards = read_testdata("cards")
    assert len(librivox) == 5 and len(cards) == 5
    assert "he was not an ill disposed young man" in {u.transcript for u in librivox}
    assert {u.path.name: u.transcript for u in cards}["001.wav"] == "ten of clubs"
    assert all("<s>" not in u.transcript and "(" not in u.transcript for u in librivox + cards)
    assert len(read_testdata()) == 10
    waveform = read_audio(librivox[1].path)
    assert 1.0 < waveform.numel() / 16000 < 8.0 and float(waveform.abs().max()) > 0.01


def test_missing_package_names_the_apt_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install pocketsphinx-testdata") as error:
        read_testdata("librivox", root=tmp_path)
    assert "\n" not in str(error.value)


def test_a_transcript_naming_a_missing_recording_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "cards.transcription").write_text("<s> ten of clubs </s> (001)\n")
    with pytest.raises(DataError, match=r"001\.wav"):
        read_testdata("cards", root=tmp_path)
