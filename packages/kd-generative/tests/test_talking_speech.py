"""Speech synthesis and pocketsphinx forced alignment: timings are monotone and cover the audio; bad input
and missing tools give KDErrors that say what to install. Tests needing espeak-ng/flite/pocketsphinx skip
where they are missing, except on CI (``CI=true``), where they fail."""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pytest
from kd_core.errors import ConfigError, DataError, KDError
from kd_generative.talking import speech
from kd_generative.talking.align import AlignmentError, align_phones
from kd_generative.talking.speech import SAMPLE_RATE, Voice, normalise_text, synthesize


def _need(tool: str) -> None:
    if tool == "pocketsphinx":
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            missing = "pip install pocketsphinx"
        else:
            return
    elif shutil.which(tool) is None:
        missing = f"apt-get install {tool}"
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing on CI ({missing})")
    pytest.skip(missing)


@pytest.mark.parametrize("voice", [Voice("flite", "slt"), Voice("espeak-ng", "en-us+f3")])
def test_aligned_phones_are_monotone_and_cover_the_audio(voice: Voice) -> None:
    _need(voice.tool)
    _need("pocketsphinx")
    text = "we may meet by the old bridge"
    samples = synthesize(text, voice)
    assert samples.dtype == np.float32 and samples.ndim == 1 and 1.0 < len(samples) / SAMPLE_RATE < 5.0
    phones = align_phones(samples, text)
    duration = len(samples) / SAMPLE_RATE
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(duration)
    for before, after in itertools.pairwise(phones):
        assert before.end == pytest.approx(after.start) and after.end > after.start
    spoken = [p.name for p in phones if p.name != "SIL"]
    assert spoken[:2] == ["W", "IY"] and spoken[-2:] == ["IH", "JH"]
    assert "M" in spoken and sum(p.end - p.start for p in phones if p.name != "SIL") > 0.5 * duration


def test_text_that_cannot_be_aligned_is_an_alignment_error() -> None:
    _need("flite")
    _need("pocketsphinx")
    samples = synthesize("open the window", Voice("flite", "slt"))
    with pytest.raises(AlignmentError):
        align_phones(samples, "xqzzv blorptastic")  # not in the dictionary
    with pytest.raises(AlignmentError):
        align_phones(np.zeros(SAMPLE_RATE, np.float32), "open the window and wave to me")  # silence


def test_empty_sentence_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        normalise_text(" ,.!? ")
    assert info.value.argument == "text"
    with pytest.raises(KDError):
        synthesize("", Voice("flite", "slt"))


@pytest.mark.parametrize("tool", ["flite", "espeak-ng"])
def test_a_missing_synthesizer_names_the_debian_package(tool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as info:
        synthesize("hello", Voice(tool, "slt" if tool == "flite" else "en-us"))
    assert f"apt-get install {tool}" in str(info.value)
    with pytest.raises(ConfigError):
        synthesize("hello", Voice("festival", "kal"))
