"""Real human speech with reference transcripts from Debian's pocketsphinx-testdata (an ASR sanity set).

``apt-get install pocketsphinx-testdata`` installs ``/usr/share/pocketsphinx/test/data/`` (BSD licence):

- ``librivox/``: 5 LibriVox utterances of *Sense and Sensibility* (3–7 s, one reader), transcripts in
  ``librivox/transcription``;
- ``cards/``: 5 spoken playing-card sequences (``001.wav``–``005.wav``, a JSGF grammar in ``cards.gram``),
  transcripts in ``cards/cards.transcription``.

Every transcription line reads ``<s> words </s> (utterance-id)``; the audio is 16 kHz 16-bit mono WAV.
None of these carry command intents (``intent`` is ``None``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kd_core.errors import ConfigError, DataError

from kd_speech.data.audio import Utterance

__all__ = ["DEBIAN_PACKAGE", "TESTDATA_DIR", "TESTDATA_SETS", "read_testdata", "read_transcription"]

DEBIAN_PACKAGE = "pocketsphinx-testdata"
TESTDATA_DIR = Path("/usr/share/pocketsphinx/test/data")
TESTDATA_SETS: dict[str, str] = {"librivox": "librivox/transcription", "cards": "cards/cards.transcription"}
"""Set name -> its transcription file, relative to ``TESTDATA_DIR``."""

_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


def read_transcription(path: Path) -> list[tuple[str, str]]:
    """``(utterance id, transcript)`` pairs of a sphinx transcription file (``<s> words </s> (id)`` per line)."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None or not match["text"].strip():
            raise DataError(f"{path}:{number}", "a line '<s> words </s> (id)'", line)
        pairs.append((match["id"], " ".join(match["text"].split())))
    return pairs


def read_testdata(name: str = "all", root: str | os.PathLike | None = None) -> list[Utterance]:
    """The utterances of ``"librivox"``, ``"cards"`` or ``"all"`` with their transcripts (speaker = set name).

    ``root``: the data folder (default ``TESTDATA_DIR``). A missing package is a ``DataError`` saying
    ``apt-get install pocketsphinx-testdata``.
    """
    names = list(TESTDATA_SETS) if name == "all" else [name]
    if any(n not in TESTDATA_SETS for n in names):
        raise ConfigError("testdata set", f"'all' or one of {tuple(TESTDATA_SETS)}", name)
    root = Path(root) if root is not None else TESTDATA_DIR
    utterances = []
    for set_name in names:
        transcription = root / TESTDATA_SETS[set_name]
        if not transcription.is_file():
            raise DataError(DEBIAN_PACKAGE, f"the {set_name} recordings at {transcription.parent}", "not installed",
                            hint=f"install them with `apt-get install {DEBIAN_PACKAGE}`")
        for utterance_id, text in read_transcription(transcription):
            audio = transcription.parent / f"{utterance_id}.wav"
            if not audio.is_file():
                raise DataError(str(audio), f"the recording named in {transcription}", "no such file",
                                hint=f"reinstall it with `apt-get install --reinstall {DEBIAN_PACKAGE}`")
            utterances.append(Utterance(audio, text, None, set_name, "test", info={"source": DEBIAN_PACKAGE,
                                                                                  "id": utterance_id}))
    return utterances
